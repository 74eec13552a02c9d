"""The render benchmark runs end to end, with worker processes, and prints its figures.

Timings are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import io

import pypdf
import pytest

from benchmarks.bench_render import generate, main


def test_main_prints_the_render_figures(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--records", "60", "--chunk", "20", "--workers", "2"])
    printed = capsys.readouterr().out

    assert "render_speedup_vs_naive_table: " in printed
    assert "render_peak_rss_mb: " in printed
    assert result.records == 60
    assert result.report_pages > 1
    assert result.peak_rss_mb > 0
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(result.report_pdf)).pages)
    ids = [record.record_id for section in generate(60).systems for record in section.records]
    assert all(f"{record_id} ·" in text for record_id in ids), "every record, from every worker's chunk"
    assert f"Side {result.report_pages} av {result.report_pages}" in text

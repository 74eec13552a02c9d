"""The deadline-scan benchmark runs and all three ways find the same alerts.

Timings are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_deadline_scan import main, run


def test_main_prints_the_scan_line(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--rows", "2000"])
    printed = capsys.readouterr().out
    assert "deadline_scan_seconds_2k: " in printed
    assert result.rows == 2000
    assert result.alerts > 0
    assert result.same_alerts, "the indexed scan, the naive loop and the unindexed scan agree"


@pytest.mark.postgres
def test_the_scan_agrees_on_postgresql() -> None:
    from tests.databases import POSTGRES_URL

    result = run(POSTGRES_URL, rows=1000)
    assert result.same_alerts
    assert result.alerts > 0

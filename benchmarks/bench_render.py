"""The chunked access-report renderer against one naive weasyprint table of the same records.

    .venv/bin/python benchmarks/bench_render.py [--records N] [--workers W] [--chunk C] [--out DIR]

A generated subject with ``N`` records spread over four systems and nine categories (contacts,
notes, orders, messages, sign-ins, ...; five or six fields each, some long), with the register
facts of ``config/systems.example.yaml``. The access report is rendered the way the pipeline
renders it (``DocumentRenderer.render_access_report_pdf``: chunks laid out in worker processes,
merged, page numbers stamped); the baseline lays out the same records as one HTML table with a
row per record through weasyprint, in the same run. Peak memory is sampled from ``/proc`` for
this process and its worker processes together while the report renders.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from html import escape
from pathlib import Path

import pypdf

from dsar.documents import AccessReport, Controller, DocumentRenderer, SystemSection
from dsar.systems import load_specs
from integrations.base import Record

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
SYSTEMS = (  # system, kind, categories
    ("hubspot-crm", "hubspot", ("contact", "note", "email")),
    ("zendesk-support", "zendesk", ("ticket", "comment")),
    ("app-db", "sql", ("order", "message", "security_log")),
    ("tripletex", "tripletex", ("invoice",)),
)
COMMENT = (
    "Hei, jeg lurer på hvorfor fakturaen for januar er høyere enn vanlig. Jeg har ikke endret "
    "abonnementet, og forrige måned var beløpet 249 kr. Kan dere sjekke det og gi meg beskjed?"
)


@dataclass(frozen=True)
class Result:
    """Timings of both renders, the report's peak memory and what the PDFs hold."""

    records: int
    report_seconds: float
    naive_seconds: float
    peak_rss_mb: float
    report_pages: int
    naive_pages: int
    report_pdf: bytes

    @property
    def speedup(self) -> float:
        """How many times faster the report rendered than the naive table."""
        return self.naive_seconds / self.report_seconds


def fields(category: str, n: int) -> dict[str, str | int | float | bool | None]:
    """Five or six fields of the kind each category holds (fictional values)."""
    if category in ("contact", "ticket"):
        return {
            "name": "Kari Nordmann",
            "email": f"kari.nordmann+{n}@example.no",
            "phone": "+47 912 34 567",
            "city": "Tromsø",
            "created": f"2024-03-{1 + n % 28:02d}T10:22:00Z",
            "subscribed": n % 2 == 0,
        }
    if category in ("order", "invoice"):
        return {
            "number": f"SO-{n:06d}",
            "date": f"2025-01-{1 + n % 28:02d}",
            "amount": round(249 + n * 0.5, 2),
            "status": "shipped",
            "shipping_address": "Storgata 1, 0155 Oslo",
        }
    if category in ("note", "comment", "message", "email"):
        return {
            "subject": "Spørsmål om faktura",
            "body": COMMENT,
            "sent": "2025-02-02T08:00:00Z",
            "read": None,
        }
    return {
        "ip": f"192.0.2.{n % 250}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0",
        "at": "2025-02-03T12:00:01Z",
        "result": "ok",
    }


def generate(records: int) -> AccessReport:
    """A report of ``records`` records, spread evenly over the systems' categories."""
    registers = {spec.name: spec.register for spec in load_specs(ROOT / "config" / "systems.example.yaml")}
    slots = [(system, kind, category) for system, kind, categories in SYSTEMS for category in categories]
    grouped: dict[str, list[Record]] = {system: [] for system, _, _ in SYSTEMS}
    for n in range(records):
        system, _, category = slots[n * len(slots) // records]
        grouped[system].append(Record(category, f"{category[:3]}-{n}", fields(category, n)))
    sections = tuple(
        SystemSection(
            system,
            kind,
            "found",
            _counts(grouped[system]),
            tuple(grouped[system]),
            register=registers.get(system),
        )
        for system, kind, _ in SYSTEMS
    )
    controller = Controller("Fjordsoft AS", "912 345 678", "Storgata 1\n0155 Oslo", "personvern@fjordsoft.no")
    return AccessReport(
        "REQ-BENCH-0001",
        "nb",
        controller,
        "Kari Nordmann",
        date(2026, 11, 22),
        date(2026, 12, 22),
        date(2026, 12, 1),
        sections,
    )


def _counts(records: Sequence[Record]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.category] = counts.get(record.category, 0) + 1
    return counts


def naive_html(report: AccessReport) -> str:
    """Every record as a row of one table: system, category, id, and its fields one per line."""
    rows = "".join(
        f"<tr><td>{escape(s.system)}</td><td>{escape(r.category)}</td><td>{escape(r.record_id)}</td><td>"
        + "<br>".join(f"{escape(k)}: {escape(str(v))}" for k, v in r.fields.items())
        + "</td></tr>"
        for s in report.systems
        for r in s.records
    )
    head = "<tr><th>System</th><th>Category</th><th>ID</th><th>Data</th></tr>"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="stylesheet" href="style.css">'
        '<style>@page { @bottom-center { content: "Page " counter(page) " of " counter(pages); } }</style>'
        f'</head><body><table class="grid"><thead>{head}</thead><tbody>{rows}</tbody></table></body></html>'
    )


class RssSampler:
    """Peak memory of this process and all its descendants together, sampled from /proc.

    Each process counts its proportional set size (Pss): pages shared between the fork server
    and its workers are counted once, not once per process as plain RSS would.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.peak_kb = 0
        self.processes = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            family = _family(os.getpid())
            self.processes = max(self.processes, len(family))
            self.peak_kb = max(self.peak_kb, sum(_memory_kb(pid) for pid in family))
            self._stop.wait(self._interval)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        """Sample while the block runs."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def _memory_kb(pid: int) -> int:
    """Pss of ``pid`` in KiB (its RSS where the kernel has no smaps_rollup); 0 once it is gone."""
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _pages(pdf: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def run(records: int, *, workers: int | None = None, chunk: int | None = None) -> Result:
    """Render the report (sampling memory), then the naive table; return both timings."""
    renderer = DocumentRenderer(TEMPLATES)
    report = generate(records)
    options = {"chunk_records": chunk} if chunk else {}
    with RssSampler().running() as sampler:
        started = time.perf_counter()
        pdf = renderer.render_access_report_pdf(report, workers=workers, **options)
        report_seconds = time.perf_counter() - started
    peak = max(sampler.peak_kb, _getrusage_peak_kb()) / 1024  # before the naive render's own peak
    print(f"processes while rendering (this one, fork server, workers): {sampler.processes}")
    started = time.perf_counter()
    naive = renderer.to_pdf(naive_html(report))
    naive_seconds = time.perf_counter() - started
    return Result(records, report_seconds, naive_seconds, peak, _pages(pdf), _pages(naive), pdf)


def _getrusage_peak_kb() -> int:
    """A floor for the peak, should sampling miss it: this process's own peak RSS so far.

    (The workers are the fork server's children, not ours: RUSAGE_CHILDREN does not see them.)
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: Sequence[str] | None = None) -> Result:
    """Parse the command line, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20_000, help="records in the report (default 20000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: up to 2, one per core)")
    parser.add_argument("--chunk", type=int, help="records per chunk (default: the renderer's)")
    parser.add_argument("--out", type=Path, help="keep the report PDF in this folder")
    args = parser.parse_args(argv)
    result = run(args.records, workers=args.workers, chunk=args.chunk)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"access-report-{args.records}.pdf").write_bytes(result.report_pdf)
    print(
        f"records: {result.records}; report pages: {result.report_pages}; naive pages: {result.naive_pages}"
    )
    print(f"access report (chunked):  {result.report_seconds:.2f} s")
    print(f"naive one-table render:   {result.naive_seconds:.2f} s")
    print(f"render_speedup_vs_naive_table: {result.speedup:.1f}")
    print(f"render_peak_rss_mb: {result.peak_rss_mb:.0f}")
    return result


if __name__ == "__main__":
    main()

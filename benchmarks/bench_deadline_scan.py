"""The deadline watch's scan (``dsar.alerts.scan``) over a large ledger, against two baselines.

    .venv/bin/python benchmarks/bench_deadline_scan.py [--rows 100000] [--url URL]

A generated ledger of ``N`` requests received over three years up to a fixed day: almost all
of the older ones answered, the last month's mostly open; some extended, some suspended, some
waiting for an operator; three status events and two system rows per request. Bulk-inserted
into a freshly migrated ledger (a temporary SQLite file by default; with ``--url`` a scratch
schema on PostgreSQL or a scratch database on MariaDB, dropped afterwards), then analysed.

Timed, best of three, in the same run:
* the scan itself (indexed queries, effective dates for the candidates only);
* a naive loop: every request loaded as an ORM object, the same rules applied in Python;
* the scan again after dropping the indexes migration 0003 added.
"""

from __future__ import annotations

import argparse
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, sessionmaker

from dsar.alerts import Alert, Pauses, _clock, _deadline_alerts, _stuck_alerts, scan
from dsar.calendar import due_date
from dsar.ledger.database import make_engine, migrate
from dsar.ledger.models import Base, Event, Request, RequestStatus, Suspension, SystemResult, SystemStatus

TODAY = date(2026, 6, 15)
THRESHOLDS = (14, 7, 3, 1)
STUCK_AFTER = 3
NEW_INDEXES = ("ix_requests_status_due_date", "ix_system_results_status", "ix_suspensions_ended_on")
OPEN = (RequestStatus.RECEIVED, RequestStatus.IN_PROGRESS, RequestStatus.AWAITING_OPERATOR)
CHUNK = 5000


@dataclass(frozen=True)
class Result:
    """The three timings (best of three, seconds) and what each found."""

    rows: int
    open_requests: int
    alerts: int
    scan_seconds: float
    naive_seconds: float
    unindexed_seconds: float
    same_alerts: bool


def seed(engine: sa.Engine, rows: int) -> int:
    """Bulk-insert ``rows`` requests with their events, systems and suspensions; return the open count."""
    rng = random.Random(7)
    opened = 0
    with engine.begin() as conn:
        for start in range(0, rows, CHUNK):
            batch = [_request(rng, n) for n in range(start, min(start + CHUNK, rows))]
            opened += sum(1 for r in batch if r["status"] in OPEN or r["status"] == RequestStatus.INCOMPLETE)
            conn.execute(sa.insert(Request), batch)
            conn.execute(sa.insert(Event), [e for r in batch for e in _events(r)])
            conn.execute(sa.insert(SystemResult), [s for r in batch for s in _systems(rng, r)])
            pauses = [p for r in batch for p in _suspensions(rng, r)]
            if pauses:
                conn.execute(sa.insert(Suspension), pauses)
    _analyse(engine)
    return opened


def _request(rng: random.Random, n: int) -> dict[str, Any]:
    received = TODAY - timedelta(days=rng.randrange(3 * 365))
    settled = due_date(received) < TODAY - timedelta(days=30)
    status = _status(rng, settled)
    return {
        "id": f"dsar-{n:012x}",
        "type": rng.choice(("access", "erasure")),
        "status": status,
        "checkpoint": "registered",
        "received_at": datetime(received.year, received.month, received.day, 9, tzinfo=UTC),
        "received_date": received,
        "due_date": due_date(received),
        "extended": status.is_open and rng.random() < 0.05,
        "language": "nb",
        "subject_ciphertext": b"sealed",
    }


def _status(rng: random.Random, settled: bool) -> RequestStatus:
    if settled and rng.random() < 0.995:
        return rng.choice((RequestStatus.COMPLETED, RequestStatus.CLOSED))
    if not settled and rng.random() < 0.15:
        return RequestStatus.COMPLETED
    return rng.choice((*OPEN, RequestStatus.INCOMPLETE))


def _events(request: dict[str, Any]) -> list[dict[str, Any]]:
    at = request["received_at"]
    kinds = ("request.registered", "request.status", "request.status")
    return [
        {
            "request_id": request["id"],
            "seq": seq,
            "occurred_at": at + timedelta(hours=seq),
            "kind": kind,
            "data": {},
            "prev_hash": "0" * 64,
            "hash": secrets.token_hex(32),
        }
        for seq, kind in enumerate(kinds, start=1)
    ]


def _systems(rng: random.Random, request: dict[str, Any]) -> list[dict[str, Any]]:
    waiting = request["status"].is_open and rng.random() < 0.1
    statuses = (SystemStatus.AWAITING_OPERATOR if waiting else SystemStatus.FOUND, SystemStatus.NONE)
    return [
        {"request_id": request["id"], "system": name, "kind": "manual", "status": status, "attempts": 1}
        for name, status in zip(("hr-binder", "app-db"), statuses, strict=True)
    ]


def _suspensions(rng: random.Random, request: dict[str, Any]) -> list[dict[str, Any]]:
    if rng.random() >= 0.01:
        return []
    started = min(request["received_date"] + timedelta(days=2), TODAY)
    ended = None if request["status"].is_open and rng.random() < 0.5 else started + timedelta(days=4)
    return [{"request_id": request["id"], "started_on": started, "ended_on": ended, "reason": "identity"}]


def _analyse(engine: sa.Engine) -> None:
    """Fresh planner statistics, as a production database keeps them."""
    tables = "requests, events, system_results, suspensions"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ANALYZE TABLE {tables}" if engine.dialect.name == "mysql" else "ANALYZE")


def run_scan(session: Session) -> list[Alert]:
    return scan(session, today=TODAY, thresholds=THRESHOLDS, stuck_after_days=STUCK_AFTER)


def run_naive(session: Session) -> list[Alert]:
    """Baseline: every request as an ORM object, filtered and checked one by one in Python."""
    alerts: list[Alert] = []
    pauses: Pauses = {}
    for request in session.scalars(sa.select(Request).options(selectinload(Request.suspensions))):
        if not request.status.is_open:
            continue
        row = (request.id, request.type, request.status, request.received_date, request.extended)
        pauses[request.id] = [(s.started_on, s.ended_on) for s in request.suspensions]
        alerts += _deadline_alerts(_clock(row, pauses[request.id], TODAY), TODAY, sorted(THRESHOLDS))
    alerts += _stuck_alerts(session, TODAY, STUCK_AFTER, pauses)  # the same SQL: only candidates differ
    return sorted(alerts, key=lambda a: (a.due_date, a.request_id, a.key))


def best_of_three(engine: sa.Engine, step: Callable[[Session], list[Alert]]) -> tuple[float, list[Alert]]:
    """The fastest of three runs, each in a fresh session, and what the last one found."""
    sessions = sessionmaker(engine)
    timings, found = [], []
    for _ in range(3):
        with sessions() as session:
            started = time.perf_counter()
            found = step(session)
            timings.append(time.perf_counter() - started)
    return min(timings), found


def drop_new_indexes(engine: sa.Engine) -> None:
    tables = [Base.metadata.tables[name] for name in ("requests", "system_results", "suspensions")]
    indexes = [index for table in tables for index in table.indexes]
    with engine.begin() as conn:
        for index in (i for i in indexes if i.name in NEW_INDEXES):
            index.drop(conn)
    _analyse(engine)


def run(url: str | None, rows: int) -> Result:
    """Seed a ledger, time the scan, the naive loop, and the scan without the new indexes."""
    with _ledger_engine(url) as engine:
        opened = seed(engine, rows)
        scan_s, found = best_of_three(engine, run_scan)
        naive_s, naive = best_of_three(engine, run_naive)
        drop_new_indexes(engine)
        unindexed_s, unindexed = best_of_three(engine, run_scan)
    same = [a.key for a in found] == [a.key for a in naive] == [a.key for a in unindexed]
    return Result(rows, opened, len(found), scan_s, naive_s, unindexed_s, same)


@contextmanager
def _ledger_engine(url: str | None) -> Iterator[sa.Engine]:
    """A migrated, empty ledger: a temporary SQLite file, or a scratch schema/database at ``url``."""
    with _scratch_url(url) as scoped:
        engine = make_engine(scoped)
        try:
            migrate(engine)
            yield engine
        finally:
            engine.dispose()


@contextmanager
def _scratch_url(url: str | None) -> Iterator[str]:
    if url is None or sa.make_url(url).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield url or f"sqlite+pysqlite:///{folder}/ledger.db"
        return
    name, parsed = f"bench_{secrets.token_hex(4)}", sa.make_url(url)
    postgres = parsed.get_backend_name() == "postgresql"
    kind = "SCHEMA" if postgres else "DATABASE"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE {kind} {name}")
    try:
        scoped = (
            parsed.update_query_dict({"options": f"-csearch_path={name}"})
            if postgres
            else parsed.set(database=name)
        )
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP {kind} {name}{' CASCADE' if postgres else ''}")
        admin.dispose()


def label(rows: int) -> str:
    """``100k`` for 100000 rows; the plain number otherwise."""
    return f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def main(argv: Sequence[str] | None = None) -> Result:
    """Parse the command line, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="requests in the ledger (default 100000)")
    parser.add_argument("--url", help="SQLAlchemy URL of a PostgreSQL or MariaDB server (default: SQLite)")
    args = parser.parse_args(argv)
    result = run(args.url, args.rows)
    backend = sa.make_url(args.url).get_backend_name() if args.url else "sqlite"
    n = label(args.rows)
    print(f"database: {backend}; requests: {result.rows}; open: {result.open_requests}")
    print(f"alerts on {TODAY}: {result.alerts}")
    print(f"naive loop over every request: {result.naive_seconds:.3f} s")
    print(f"scan without the 0003 indexes: {result.unindexed_seconds:.3f} s")
    print(f"same alerts from all three: {result.same_alerts}")
    print(f"deadline_scan_seconds_{n}: {result.scan_seconds:.3f}")
    return result


if __name__ == "__main__":
    main()

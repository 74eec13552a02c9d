"""Set-based erasure (the real ``SqlDatabase.erase``) against a row-by-row baseline.

    .venv/bin/python benchmarks/bench_sql_erasure.py [--rows N] [--url URL]

A generated shop: one subject with ``N`` child rows (half orders, kept and anonymised; half
events, deleted) plus as many rows again spread over other people, and a product catalogue
the orders point at. Each strategy runs on a freshly seeded copy, in one transaction, timed
in the same run. SQLite in a temporary file by default; ``--url`` for any other database
(tables named ``bench_*`` are created there and dropped afterwards).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from integrations.base import Subject
from integrations.datasets import Dataset
from integrations.sql import SqlDatabase

metadata = sa.MetaData()
customers = sa.Table(
    "bench_customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(254), nullable=False, index=True),
)
products = sa.Table(
    "bench_products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
)
orders = sa.Table(
    "bench_orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("bench_customers.id"), index=True),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("bench_products.id"), nullable=False),
    sa.Column("shipping_address", sa.String(300)),
)
events = sa.Table(
    "bench_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("bench_customers.id"), nullable=False, index=True),
    sa.Column("ip_address", sa.String(45), nullable=False),
)

DATASET = Dataset.model_validate(
    {
        "name": "bench",
        "tables": [
            {
                "table": "bench_customers",
                "category": "customer",
                "identify": {"email": "email"},
                "erase": "delete",
            },
            {
                "table": "bench_orders",
                "category": "order",
                "references": [{"table": "bench_customers", "column": "customer_id", "detach": True}],
                "erase": "anonymise",
                "anonymise": {"shipping_address": None},
            },
            {
                "table": "bench_events",
                "category": "event",
                "references": [{"table": "bench_customers", "column": "customer_id"}],
                "erase": "delete",
            },
        ],
    }
)
SUBJECT = Subject(email="kari.nordmann@example.no")
OTHER_PEOPLE = 100
State = dict[str, list[tuple[Any, ...]]]


@dataclass(frozen=True)
class Result:
    """Timings of both strategies and the database each left behind."""

    rows: int
    set_based_seconds: float
    row_by_row_seconds: float
    set_based_state: State
    row_by_row_state: State

    @property
    def speedup(self) -> float:
        """How many times faster set-based erasure was."""
        return self.row_by_row_seconds / self.set_based_seconds


def seed(engine: sa.Engine, rows: int) -> None:
    """A fresh copy: drop and create the tables, then the subject, other people and the catalogue."""
    metadata.drop_all(engine)
    metadata.create_all(engine)
    people = [{"id": 1, "email": SUBJECT.email}]
    people += [{"id": 2 + n, "email": f"person{n}@example.no"} for n in range(OTHER_PEOPLE)]
    owners = [1] * rows + [2 + n % OTHER_PEOPLE for n in range(rows)]
    with engine.begin() as conn:
        conn.execute(customers.insert(), people)
        conn.execute(products.insert(), [{"id": n, "name": f"product {n}"} for n in range(10)])
        for start in range(0, len(owners), 5000):
            _insert_children(conn, owners, start, min(start + 5000, len(owners)))


def _insert_children(conn: sa.Connection, owners: Sequence[int], start: int, stop: int) -> None:
    """Orders (even positions) and events (odd positions) for ``owners[start:stop]``."""
    ids = range(start, stop)
    shop = [
        {"id": n, "customer_id": owners[n], "product_id": n % 10, "shipping_address": f"Street {n}"}
        for n in ids
        if n % 2 == 0
    ]
    logins = [{"id": n, "customer_id": owners[n], "ip_address": f"192.0.2.{n % 250}"} for n in ids if n % 2]
    conn.execute(orders.insert(), shop)
    conn.execute(events.insert(), logins)


def erase_set_based(engine: sa.Engine) -> float:
    """Seconds for the integration's own erasure (tables reflected beforehand)."""
    database = SqlDatabase("bench", engine=engine, dataset=DATASET)
    database.check()
    started = time.perf_counter()
    database.erase(SUBJECT)
    return time.perf_counter() - started


def erase_row_by_row(engine: sa.Engine) -> float:
    """Seconds for the baseline: SELECT the ids, then one UPDATE or DELETE per row, one transaction."""
    assert SUBJECT.email is not None
    started = time.perf_counter()
    with engine.begin() as conn:
        match = sa.func.lower(customers.c.email) == SUBJECT.email.lower()
        for customer_id in conn.execute(sa.select(customers.c.id).where(match)).scalars().all():
            for order_id in _children(conn, orders, customer_id):
                anonymise = orders.update().where(orders.c.id == order_id)
                conn.execute(anonymise.values(customer_id=None, shipping_address=None))
            for event_id in _children(conn, events, customer_id):
                conn.execute(events.delete().where(events.c.id == event_id))
            conn.execute(customers.delete().where(customers.c.id == customer_id))
    return time.perf_counter() - started


def _children(conn: sa.Connection, table: sa.Table, customer_id: int) -> list[int]:
    """Ids of ``table``'s rows belonging to ``customer_id``."""
    return list(conn.execute(sa.select(table.c.id).where(table.c.customer_id == customer_id)).scalars())


def state(engine: sa.Engine) -> State:
    """Every row of every table, sorted, to compare end states."""
    with engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in conn.execute(sa.select(table)))
            for table in metadata.sorted_tables
        }


def run(url: str | None, rows: int) -> Result:
    """Seed, erase set-based; seed again, erase row by row; return both timings and end states."""
    with _engine(url) as engine:
        seed(engine, rows)
        set_based = erase_set_based(engine)
        set_based_state = state(engine)
        seed(engine, rows)
        row_by_row = erase_row_by_row(engine)
        row_by_row_state = state(engine)
        metadata.drop_all(engine)
    return Result(rows, set_based, row_by_row, set_based_state, row_by_row_state)


@contextmanager
def _engine(url: str | None) -> Iterator[sa.Engine]:
    """An engine for ``url``, or for a temporary SQLite file; foreign keys enforced on SQLite."""
    with tempfile.TemporaryDirectory() as folder:
        engine = sa.create_engine(url or f"sqlite+pysqlite:///{folder}/bench.db")
        if engine.dialect.name == "sqlite":
            sa.event.listen(
                engine, "connect", lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA foreign_keys=ON")
            )
        try:
            yield engine
        finally:
            engine.dispose()


def main(argv: Sequence[str] | None = None) -> Result:
    """Parse the command line, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=20_000, help="the subject's child rows (default 20000)")
    parser.add_argument("--url", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    result = run(args.url, args.rows)
    backend = sa.make_url(args.url).get_backend_name() if args.url else "sqlite"
    print(f"database: {backend}; subject rows: {args.rows}; other people's rows: {args.rows}")
    print(f"set-based erasure:  {result.set_based_seconds:.3f} s")
    print(f"row-by-row erasure: {result.row_by_row_seconds:.3f} s")
    print(f"same end state: {result.set_based_state == result.row_by_row_state}")
    print(f"sql_erasure_speedup_vs_row_by_row: {result.speedup:.1f}")
    return result


if __name__ == "__main__":
    main()

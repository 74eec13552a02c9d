"""Traversal and set-based erasure of the "sql" integration over self-references and cycles.

A small shop schema, on real SQLite, PostgreSQL and MariaDB:

* ``customers.merged_into -> customers``: duplicate accounts merged into the subject's are hers
  (a followed self-reference, detached to break the cycle);
* ``customers.referred_by -> customers``: a pointer only (``follow: false``): whom she referred
  is someone else, whose ``referred_by`` is set to NULL when she is deleted;
* ``addresses.customer_id -> customers`` and ``customers.default_address_id -> addresses``: a
  two-table cycle, closed by detaching ``default_address_id``;
* ``orders -> customers`` (kept, anonymised, detached) and ``orders -> products``: the shared
  catalogue is not the subject's and must survive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from integrations.base import Subject
from integrations.datasets import Dataset
from integrations.sql import SqlDatabase
from tests.databases import make_database_url
from tests.test_sql_integration import KINDS, make_engine, snapshot

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("merged_into", sa.Integer, sa.ForeignKey("customers.id")),
    sa.Column("referred_by", sa.Integer, sa.ForeignKey("customers.id")),
    sa.Column("default_address_id", sa.Integer, sa.ForeignKey("addresses.id", use_alter=True)),
)
addresses = sa.Table(
    "addresses",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False),
    sa.Column("street", sa.String(200), nullable=False),
)
products = sa.Table(
    "products",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(100), nullable=False),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id")),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("shipping_address", sa.String(300)),
)

DATASET = Dataset.model_validate(
    {
        "name": "shop",
        "tables": [
            {
                "table": "customers",
                "category": "customer",
                "identify": {"email": "email"},
                "references": [
                    {"table": "customers", "column": "merged_into", "detach": True},
                    {"table": "customers", "column": "referred_by", "follow": False},
                    {"table": "addresses", "column": "default_address_id", "detach": True},
                ],
                "erase": "delete",
            },
            {
                "table": "addresses",
                "category": "address",
                "references": [{"table": "customers", "column": "customer_id"}],
                "erase": "delete",
            },
            {
                "table": "orders",
                "category": "order",
                "references": [{"table": "customers", "column": "customer_id", "detach": True}],
                "erase": "anonymise",
                "anonymise": {"shipping_address": None},
            },
        ],
    }
)
KARI = Subject(email="kari@example.no")
# Kari is customer 1; 2 and 3 are her old accounts (3 merged into 2, 2 into 1, 1 into 3: a loop).
# Customer 4 is a second account found only through the cycle: its default address 14 is hers.
# Ola (10) and Per (11) are other people: Kari referred Ola; Ola and Per merged into each other.
MINE = {"customers": {1, 2, 3, 4}, "addresses": {11, 12, 14}, "orders": {21, 22}}
CUSTOMERS = [
    (1, "kari@example.no", 3, None),
    (2, "kari.old@example.no", 1, None),
    (3, "k.nordmann@example.no", 2, None),
    (4, "kari.work@example.no", None, None),
    (10, "ola@example.no", 11, 1),
    (11, "per@example.no", 10, None),
]
ADDRESSES = [(11, 1, "Storgata 12"), (12, 2, "Storgata 12"), (14, 1, "Kongens gate 1"), (15, 10, "Bryggen")]
DEFAULT_ADDRESSES = {1: 11, 4: 14, 10: 15}
ORDERS = [(21, 1, 100), (22, 4, 100), (23, 10, 100), (24, 11, 101)]


def seed(engine: sa.Engine) -> None:
    """The rows described above; the cyclic links are set once both ends exist."""
    with engine.begin() as conn:
        rows = [dict(zip(("id", "email"), row[:2], strict=True)) for row in CUSTOMERS]
        conn.execute(customers.insert(), rows)
        conn.execute(
            addresses.insert(),
            [dict(zip(("id", "customer_id", "street"), a, strict=True)) for a in ADDRESSES],
        )
        for key, merged, referred in ((row[0], row[2], row[3]) for row in CUSTOMERS):
            links = {"merged_into": merged, "referred_by": referred}
            links["default_address_id"] = DEFAULT_ADDRESSES.get(key)
            conn.execute(customers.update().where(customers.c.id == key).values(links))
        conn.execute(products.insert(), [{"id": 100, "name": "Lamp"}, {"id": 101, "name": "Chair"}])
        for key, customer, product in ORDERS:
            values = {"id": key, "customer_id": customer, "product_id": product, "shipping_address": "x"}
            conn.execute(orders.insert().values(values))


@pytest.fixture(params=KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A seeded shop database of each kind."""
    with make_database_url(request.param) as url:
        engine = make_engine(url)
        metadata.create_all(engine)
        seed(engine)
        yield engine
        engine.dispose()


def shop(engine: sa.Engine, batch_size: int = 500) -> SqlDatabase:
    """The integration over the shop database."""
    return SqlDatabase("shop", engine=engine, dataset=DATASET, batch_size=batch_size)


def others(rows: dict[str, dict[Any, dict[str, Any]]]) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every row that is not the subject's."""
    return {
        table: {k: r for k, r in rs.items() if k not in MINE.get(table, set())} for table, rs in rows.items()
    }


def test_traversal_follows_self_references_and_cycles_to_exactly_the_subjects_rows(engine: sa.Engine) -> None:
    database = shop(engine, batch_size=1)
    found: dict[str, set[int]] = {table: set() for table in MINE}
    tables = {rule.category: rule.table for rule in DATASET.tables}
    for record in database.export(KARI).records:
        found[tables[record.category]].add(int(record.record_id))
    assert found == MINE
    assert dict(database.lookup(KARI).counts) == {"customer": 4, "address": 3, "order": 2}


@pytest.mark.parametrize("batch_size", [1, 2, 500])
def test_erase_removes_exactly_the_subjects_rows_and_keeps_the_catalogue(
    engine: sa.Engine, batch_size: int
) -> None:
    before = snapshot(engine)
    outcome = shop(engine, batch_size).erase(KARI)
    after = snapshot(engine)
    assert dict(outcome.counts) == {"customer": 4, "address": 3, "order": 2}
    assert set(after["customers"]) == {10, 11}
    assert set(after["addresses"]) == {15}
    assert after["products"] == before["products"], "the shared catalogue must survive"
    for key in MINE["orders"]:
        assert after["orders"][key] == {
            **before["orders"][key],
            "customer_id": None,
            "shipping_address": None,
        }
    expected = others(before)
    expected["customers"][10] = {**expected["customers"][10], "referred_by": None}  # released pointer
    assert others(after) == expected


def test_erase_again_is_a_no_op(engine: sa.Engine) -> None:
    database = shop(engine)
    database.erase(KARI)
    before = snapshot(engine)
    assert database.erase(KARI).total == 0
    assert snapshot(engine) == before


def test_erase_is_set_based_not_one_statement_per_row(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        more = [{"id": 1000 + n, "customer_id": 1, "product_id": 100} for n in range(600)]
        conn.execute(orders.insert(), more)
        conn.execute(
            addresses.insert(), [{"id": 1000 + n, "customer_id": 1, "street": "s"} for n in range(600)]
        )
    database = shop(engine, batch_size=500)
    database.check()  # reflect the tables before counting
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    outcome = database.erase(KARI)
    assert dict(outcome.counts) == {"customer": 4, "address": 603, "order": 602}
    writes = [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "DELETE"))]
    assert len(writes) <= 12, writes
    assert len(statements) <= 30, statements

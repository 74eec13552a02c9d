"""The "sql" integration against real SQLite, PostgreSQL and MariaDB databases.

Each test gets its own empty database (a temp file, a PostgreSQL schema or a MariaDB database
with a random name) seeded with the Fjordlys demo rows. PostgreSQL and MariaDB must be up:
an unreachable server fails the test, it is never skipped.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from emulators.internal_db import DEMO_SUBJECT, create_schema, seed_demo_rows
from integrations.base import Subject, System
from integrations.datasets import Dataset, DatasetError, check_schema, load_dataset
from integrations.errors import PermanentError, RetryableError
from integrations.sql import SqlConfig, SqlDatabase, from_config
from tests.databases import make_database_url

DATASET = Path(__file__).resolve().parents[1] / "datasets" / "app_db.yaml"
KARI = Subject(email="kari.nordmann@example.no", phone="+4791234567", name="Kari Nordmann")
KARI_COUNTS = {
    "customer": 1,
    "order": 2,
    "order_line": 4,
    "message": 2,
    "marketing": 1,
    "security_log": 3,
}
HEAD = "name: x\ntables:\n"  # start of the small datasets in the validation tests
KINDS = [
    pytest.param("sqlite"),
    pytest.param("postgresql", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


# --- fixtures (free of this module's state, so they can move to conftest.py) -----------------


def make_engine(url: str) -> sa.Engine:
    """An engine for ``url``; SQLite gets foreign keys enforced like the servers."""
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA foreign_keys=ON"))
    return engine


@pytest.fixture(params=KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[sa.Engine]:
    """A seeded demo database of each kind."""
    with make_database_url(request.param) as url:
        engine = make_engine(url)
        create_schema(engine)
        seed_demo_rows(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def database(engine: sa.Engine) -> Iterator[SqlDatabase]:
    """The integration under test, over the seeded database."""
    database = SqlDatabase("app-db", engine=engine, dataset=load_dataset(DATASET))
    yield database
    database.close()


# --- helpers ---------------------------------------------------------------------------------


def snapshot(engine: sa.Engine) -> dict[str, dict[Any, dict[str, Any]]]:
    """Every row of every demo table, by table and primary key."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return {
            table.name: {row.id: dict(row._mapping) for row in conn.execute(sa.select(table))}
            for table in metadata.tables.values()
        }


def subject_ids(database: SqlDatabase, dataset: Dataset) -> dict[str, set[int]]:
    """The primary keys of the subject's rows, by table, as the export reports them."""
    tables = {rule.category: rule.table for rule in dataset.tables}
    ids: dict[str, set[int]] = {rule.table: set() for rule in dataset.tables}
    for record in database.export(KARI).records:
        ids[tables[record.category]].add(int(record.record_id))
    return ids


def assert_no_personal_data(error: BaseException) -> None:
    """Neither the message nor the printed traceback (with its chain) holds the subject's data."""
    printed = "".join(traceback.format_exception(error)).lower()
    for value in (KARI.email, KARI.phone, DEMO_SUBJECT.email, "nordmann"):
        assert value is not None
        assert value.lower() not in printed, f"{value!r} leaked into {type(error).__name__}"


def write_dataset(folder: Path, text: str) -> Path:
    """A dataset file holding ``text``."""
    path = folder / "dataset.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- lookup ----------------------------------------------------------------------------------


def test_is_a_system_and_check_passes(database: SqlDatabase) -> None:
    assert isinstance(database, System)
    assert database.kind == "sql"
    database.check()


@pytest.mark.parametrize("email", ["kari.nordmann@example.no", "KARI.NORDMANN@EXAMPLE.NO"])
def test_lookup_by_email_is_case_insensitive_and_follows_foreign_keys(
    database: SqlDatabase, email: str
) -> None:
    result = database.lookup(Subject(email=email))
    assert result.system == "app-db"
    assert dict(result.counts) == KARI_COUNTS


def test_lookup_by_phone_finds_the_customer_tree_but_not_the_newsletter(database: SqlDatabase) -> None:
    result = database.lookup(Subject(phone="+4791234567"))
    assert dict(result.counts) == {**KARI_COUNTS, "marketing": 0}


def test_lookup_of_a_stranger_is_a_definite_zero(database: SqlDatabase) -> None:
    result = database.lookup(Subject(email="nobody@example.no", phone="+4700000000"))
    assert not result.found
    assert set(result.counts) == set(KARI_COUNTS)


def test_a_subject_without_email_or_phone_is_refused_not_reported_empty(database: SqlDatabase) -> None:
    with pytest.raises(PermanentError, match="identifiers"):
        database.lookup(Subject(name="Kari Nordmann"))


# --- export ----------------------------------------------------------------------------------


def test_export_returns_every_row_with_faithful_json_friendly_values(database: SqlDatabase) -> None:
    export = database.export(KARI)
    assert export.counts() == KARI_COUNTS
    by_category = {record.category: record for record in reversed(export.records)}
    customer = by_category["customer"].fields
    assert customer["email"] == DEMO_SUBJECT.email
    assert (customer["full_name"], customer["city"]) == ("Kari Nordmann", "Oslo")
    assert customer["created_at"] == "2025-03-14T09:30:00"
    assert by_category["customer"].record_id == str(customer["id"])
    first_order = by_category["order"].fields
    assert first_order["total_nok"] == "648.50"
    assert first_order["notes"] == "Ring på døra, takk."
    assert first_order["customer_id"] == customer["id"]
    assert by_category["marketing"].fields["confirmed"] is True
    assert by_category["order_line"].fields["unit_price_nok"] == "499.00"


def test_export_fields_are_all_columns_and_json_scalars(database: SqlDatabase, engine: sa.Engine) -> None:
    columns = {name: set(next(iter(rows.values()))) for name, rows in snapshot(engine).items()}
    tables = {rule.category: rule.table for rule in load_dataset(DATASET).tables}
    for record in database.export(KARI).records:
        assert set(record.fields) == columns[tables[record.category]]
        assert all(
            value is None or type(value) in (str, int, float, bool) for value in record.fields.values()
        )


# --- erase -----------------------------------------------------------------------------------


def test_erase_reports_what_it_did(database: SqlDatabase) -> None:
    outcome = database.erase(KARI)
    assert outcome.method == "delete+anonymise"
    assert dict(outcome.counts) == KARI_COUNTS


def test_erase_deletes_and_anonymises_only_the_subjects_rows(
    database: SqlDatabase, engine: sa.Engine
) -> None:
    dataset = load_dataset(DATASET)
    before, mine = snapshot(engine), subject_ids(database, dataset)
    database.erase(KARI)
    after = snapshot(engine)
    for rule in dataset.tables:
        others = {key: row for key, row in before[rule.table].items() if key not in mine[rule.table]}
        kept = {key: row for key, row in after[rule.table].items() if key not in mine[rule.table]}
        assert kept == others, f"{rule.table}: other people's rows changed"
        assert set(after[rule.table]) & mine[rule.table] == (
            mine[rule.table] if rule.erase == "anonymise" else set()
        )


def test_erase_anonymises_kept_rows_and_detaches_them(database: SqlDatabase, engine: sa.Engine) -> None:
    mine = subject_ids(database, load_dataset(DATASET))
    database.erase(KARI)
    after = snapshot(engine)
    for key in mine["orders"]:
        order = after["orders"][key]
        assert (order["customer_id"], order["shipping_address"], order["notes"]) == (None, None, "[erased]")
        assert order["order_number"].startswith("FL-")
    assert all(after["order_lines"][key]["gift_message"] is None for key in mine["order_lines"])


def test_after_erase_no_email_or_phone_of_the_subject_is_left(
    database: SqlDatabase, engine: sa.Engine
) -> None:
    database.erase(KARI)
    values = [
        str(value).lower()
        for rows in snapshot(engine).values()
        for row in rows.values()
        for value in row.values()
    ]
    assert not any("kari.nordmann@example.no" in value or "+4791234567" in value for value in values)
    assert any("kari.nordmann@eksempel.no" in value for value in values), "the namesake must survive"


def test_erase_again_is_a_successful_no_op(database: SqlDatabase, engine: sa.Engine) -> None:
    database.erase(KARI)
    before = snapshot(engine)
    outcome = database.erase(KARI)
    assert outcome.total == 0
    assert set(outcome.counts) == set(KARI_COUNTS)
    assert not database.lookup(KARI).found
    assert snapshot(engine) == before


def test_erase_is_one_transaction_and_its_error_carries_no_personal_data(
    engine: sa.Engine, tmp_path: Path
) -> None:
    text = DATASET.read_text(encoding="utf-8")
    without_logins = text[: text.index("  - table: login_events")]
    database = SqlDatabase(
        "app-db", engine=engine, dataset=load_dataset(write_dataset(tmp_path, without_logins))
    )
    before = snapshot(engine)
    with pytest.raises(PermanentError) as caught:
        database.erase(KARI)
    assert snapshot(engine) == before, "a failed erasure must roll back entirely"
    assert_no_personal_data(caught.value)


# --- configuration and failures --------------------------------------------------------------


def test_check_names_a_column_the_database_lacks(engine: sa.Engine, tmp_path: Path) -> None:
    text = DATASET.read_text(encoding="utf-8").replace("shipping_address: null", "shiping_address: null")
    database = SqlDatabase("app-db", engine=engine, dataset=load_dataset(write_dataset(tmp_path, text)))
    with pytest.raises(PermanentError, match=r"orders.*shiping_address"):
        database.check()


def test_check_names_a_table_the_database_lacks(engine: sa.Engine, tmp_path: Path) -> None:
    text = DATASET.read_text(encoding="utf-8").replace("table: login_events", "table: login_event")
    database = SqlDatabase("app-db", engine=engine, dataset=load_dataset(write_dataset(tmp_path, text)))
    with pytest.raises(PermanentError, match=r"'login_event' is not in the database"):
        database.lookup(KARI)


def test_check_schema_wants_a_nullable_column_to_detach() -> None:
    dataset = load_dataset(DATASET)
    schema = {rule.table: dict.fromkeys(rule.columns(), True) for rule in dataset.tables}
    check_schema(dataset, schema)
    schema["orders"]["customer_id"] = False
    with pytest.raises(DatasetError, match=r"orders\.customer_id must be nullable"):
        check_schema(dataset, schema)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, parent: {table: b, column: b_id},"
            " erase: delete}\n"
            "  - {table: b, category: c, parent: {table: a, column: a_id}, erase: delete}\n",
            "cycle: a -> b -> a; set 'detach: true'",
        ),
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, parent: {table: a, column: a_id},"
            " erase: delete}\n",
            "cycle: a -> a",
        ),
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, parent: {table: b, column: b_id},"
            " erase: delete}\n",
            "references unknown table 'b'",
        ),
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, erase: delete}\n"
            "  - {table: b, category: c, parent: {table: c, column: c_id}, erase: delete}\n"
            "  - {table: c, category: c, parent: {table: b, column: b_id}, detach: true, erase: delete}\n",
            r"\['b', 'c'\] cannot be reached from a table with 'identify'",
        ),
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, erase: delete,"
            " references: [{table: a, column: r, follow: false, detach: true}]}\n",
            "not followed: 'detach' does not apply",
        ),
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, erase: delete, detach: true}\n",
            "table-level 'detach' goes with 'parent'",
        ),
        (
            HEAD + "  - {table: a, category: c, identify: {email: e}, erase: delete,"
            " parent: {table: a, column: p}, references: []}\n",
            "'parent' or 'references', not both",
        ),
        (
            "name: x\ntables:\n  - {table: a, category: c, identify: {email: email}, erase: delete}\n"
            "  - {table: b, category: c, parent: {table: a, column: a_id}, erase: anonymise,"
            " anonymise: {note: null}}\n",
            "'a' is deleted but its child 'b' is kept",
        ),
        (
            "name: x\ntables:\n  - {table: a, category: c, identify: {email: email}, erase: anonymise,"
            " anonymise: {name: null}}\n",
            "keeps identifying column",
        ),
        (HEAD + "  - {table: a, category: c, erase: delete}\n", "needs 'identify', a followed reference"),
        (
            "name: x\ntables:\n  - {table: a, category: c, identify: {email: e}, erase: shred}\n",
            "tables.0.erase",
        ),
        (
            "name: x\ntables:\n  - {table: a, category: c, identify: {fax: f}, erase: delete}\n",
            "identify.fax",
        ),
        ("name: x\ntables: [", "not valid YAML"),
    ],
)
def test_load_dataset_names_the_problem(tmp_path: Path, yaml_text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(write_dataset(tmp_path, yaml_text))


def test_the_demo_dataset_orders_parents_before_children() -> None:
    order = [rule.table for rule in load_dataset(DATASET).ordered()]
    assert order.index("customers") < order.index("orders") < order.index("order_lines")


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(
            "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=3", marks=pytest.mark.postgres
        ),
        pytest.param("mysql+pymysql://root@127.0.0.1:1/test?connect_timeout=3", marks=pytest.mark.mariadb),
    ],
)
def test_a_database_that_is_down_is_retryable_and_says_nothing_personal(url: str, tmp_path: Path) -> None:
    database = from_config("app-db", SqlConfig(url=SecretStr(url), dataset=DATASET))
    with pytest.raises(RetryableError) as caught:
        database.lookup(KARI)
    assert_no_personal_data(caught.value)
    assert caught.value.system == "app-db"
    database.close()


def test_from_config_builds_a_working_system_and_hides_the_url(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path}/app.db"
    config = SqlConfig(url=SecretStr(url), dataset=DATASET)
    assert url not in repr(config)
    database = from_config("app-db", config)
    create_schema(sa.create_engine(url))
    assert not database.lookup(KARI).found
    database.close()

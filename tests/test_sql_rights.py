"""Rectification, restriction and suppression in the "sql" integration, on real databases.

The Fjordlys demo database on SQLite, PostgreSQL and MariaDB (see tests/test_sql_integration.py
for how each gets its own scratch database), with the rules of ``datasets/app_db.yaml``:
customers rectify name, e-mail and phone, customers and orders carry ``processing_restricted``,
suppression opts the customer out and deletes the newsletter subscription.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from emulators.internal_db import create_schema, seed_demo_rows
from integrations.base import Subject
from integrations.datasets import DatasetError, check_schema, load_dataset
from integrations.errors import NeedsOperator, PermanentError
from integrations.rights import Corrections, Rectifies, Restricts, RightOutcome, Suppresses
from integrations.sql import SqlDatabase
from tests.databases import make_database_url
from tests.test_sql_integration import (
    DATASET,
    HEAD,
    KARI,
    KARI_COUNTS,
    KINDS,
    assert_no_personal_data,
    make_engine,
    snapshot,
    write_dataset,
)

NONE = dict.fromkeys(KARI_COUNTS, 0)
FIXED = Corrections(name="Kari Nordmann-Hansen", email="kari.hansen@example.no", phone="+4790000001")
KARI_FIXED = Subject(email=FIXED.email, phone=FIXED.phone)
Rows = dict[str, dict[Any, dict[str, Any]]]


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
    """The integration under test, with the demo dataset."""
    database = SqlDatabase("app-db", engine=engine, dataset=load_dataset(DATASET))
    yield database
    database.close()


def over(engine: sa.Engine, path: Path) -> SqlDatabase:
    """The integration over ``engine`` with the dataset file at ``path``."""
    return SqlDatabase("app-db", engine=engine, dataset=load_dataset(path))


def demo_text(*, without: tuple[str, ...] = ()) -> str:
    """The demo dataset, without the rule lines that start with one of ``without``."""
    lines = DATASET.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.strip().startswith(without))


def mine(database: SqlDatabase, subject: Subject = KARI) -> dict[str, set[int]]:
    """The primary keys of the subject's rows, by table, as the export reports them."""
    tables = {"customer": "customers", "order": "orders", "marketing": "newsletter_subscriptions"}
    ids: dict[str, set[int]] = {table: set() for table in tables.values()}
    for record in database.export(subject).records:
        if record.category in tables:
            ids[tables[record.category]].add(int(record.record_id))
    return ids


def others(rows: Rows, keys: dict[str, set[int]]) -> Rows:
    """Every row but the subject's."""
    return {
        table: {k: row for k, row in by_key.items() if k not in keys.get(table, ())}
        for table, by_key in rows.items()
    }


def fields(database: SqlDatabase, subject: Subject, category: str) -> list[dict[str, Any]]:
    """The exported fields of the subject's records of ``category``."""
    return [dict(r.fields) for r in database.export(subject).records if r.category == category]


def test_the_integration_has_every_right(database: SqlDatabase) -> None:
    assert isinstance(database, Rectifies)
    assert isinstance(database, Restricts)
    assert isinstance(database, Suppresses)


# --- rectify ---------------------------------------------------------------------------------


def test_rectify_writes_the_corrections_and_export_reads_them_back(database: SqlDatabase) -> None:
    outcome = database.rectify(KARI, FIXED)
    assert outcome == RightOutcome("app-db", "update-rows", {**NONE, "customer": 1, "marketing": 1})
    [customer] = fields(database, KARI_FIXED, "customer")
    written = (customer["full_name"], customer["email"], customer["phone"])
    assert written == (FIXED.name, FIXED.email, FIXED.phone)
    assert [row["email"] for row in fields(database, KARI_FIXED, "marketing")] == [FIXED.email]
    assert database.lookup(KARI_FIXED).counts == KARI_COUNTS, "her orders, messages and logins follow"
    assert not database.lookup(KARI).found, "the old e-mail and phone are gone"


def test_rectify_leaves_other_peoples_rows_alone(database: SqlDatabase, engine: sa.Engine) -> None:
    keys, before = mine(database), snapshot(engine)
    database.rectify(KARI, FIXED)
    after = snapshot(engine)
    assert others(after, keys) == others(before, keys), "the namesake and the others are untouched"
    for table in ("orders", "order_lines", "support_messages", "login_events"):
        assert after[table] == before[table]


def test_rectify_again_changes_nothing(database: SqlDatabase, engine: sa.Engine) -> None:
    database.rectify(KARI, FIXED)
    before = snapshot(engine)
    assert database.rectify(KARI_FIXED, FIXED) == RightOutcome("app-db", "update-rows", NONE)
    assert database.rectify(KARI, FIXED).total == 0, "the old identity finds nothing any more"
    assert snapshot(engine) == before


def test_a_value_already_held_is_not_counted(database: SqlDatabase) -> None:
    unchanged = Corrections(name="Kari Nordmann", phone="+4791234567")
    assert database.rectify(KARI, unchanged).total == 0


def test_rectify_touches_only_the_corrected_attributes(database: SqlDatabase) -> None:
    outcome = database.rectify(KARI, Corrections(name="KARI NORDMANN"))  # case only: MariaDB too
    assert outcome.counts == {**NONE, "customer": 1}
    [customer] = fields(database, KARI, "customer")
    assert (customer["full_name"], customer["email"]) == ("KARI NORDMANN", "Kari.Nordmann@Example.no")
    assert fields(database, KARI, "marketing")[0]["email"] == "Kari.Nordmann@Example.no"


def test_a_case_only_email_correction_is_written(database: SqlDatabase) -> None:
    outcome = database.rectify(KARI, Corrections(email="kari.nordmann@example.no"))
    assert outcome.counts == {**NONE, "customer": 1, "marketing": 1}
    assert fields(database, KARI, "customer")[0]["email"] == "kari.nordmann@example.no"


def test_corrections_without_a_declared_column_change_nothing(engine: sa.Engine, tmp_path: Path) -> None:
    database = over(engine, write_dataset(tmp_path, demo_text().replace("name: full_name, ", "")))
    before = snapshot(engine)
    outcome = database.rectify(KARI, Corrections(name="Kari Hansen"))
    assert outcome == RightOutcome("app-db", "update-rows", NONE)
    assert database.rectify(KARI, Corrections()).total == 0
    assert snapshot(engine) == before


# --- restrict --------------------------------------------------------------------------------


def test_restrict_then_lift_reads_back_the_flag(database: SqlDatabase, engine: sa.Engine) -> None:
    before = snapshot(engine)
    outcome = database.restrict(KARI)
    assert outcome == RightOutcome("app-db", "flag-rows", {**NONE, "customer": 1, "order": 2})
    for category in ("customer", "order"):
        flags = [row["processing_restricted"] for row in fields(database, KARI, category)]
        assert flags == [True] * outcome.counts[category]
    restricted = snapshot(engine)
    keys = mine(database)
    for table in ("customers", "orders"):
        flagged = {key for key, row in restricted[table].items() if row["processing_restricted"]}
        assert flagged == keys[table], f"{table}: only the subject's rows are restricted"

    assert database.restrict(KARI) == RightOutcome("app-db", "flag-rows", NONE), "already restricted"
    assert snapshot(engine) == restricted
    lifted = database.lift_restriction(KARI)
    assert lifted == RightOutcome("app-db", "flag-rows", outcome.counts)
    assert snapshot(engine) == before
    assert database.lift_restriction(KARI).total == 0
    assert snapshot(engine) == before


def test_lifting_a_restriction_that_was_never_set_changes_nothing(
    database: SqlDatabase, engine: sa.Engine
) -> None:
    before = snapshot(engine)
    assert database.lift_restriction(KARI) == RightOutcome("app-db", "flag-rows", NONE)
    assert snapshot(engine) == before


# --- suppress --------------------------------------------------------------------------------


def test_suppress_unsubscribes_and_opts_out_only_the_subject(
    database: SqlDatabase, engine: sa.Engine
) -> None:
    keys, before = mine(database), snapshot(engine)
    outcome = database.suppress(KARI)
    assert outcome == RightOutcome("app-db", "delete-or-update-rows", {**NONE, "customer": 1, "marketing": 1})
    after = snapshot(engine)
    assert not set(after["newsletter_subscriptions"]) & keys["newsletter_subscriptions"]
    assert [row["marketing_opt_in"] for row in fields(database, KARI, "customer")] == [False]
    assert others(after, keys) == others(before, keys), "other subscribers and customers untouched"
    assert len(after["newsletter_subscriptions"]) == len(before["newsletter_subscriptions"]) - 1
    assert database.lookup(KARI).counts == {**KARI_COUNTS, "marketing": 0}, "the customer is kept"


def test_suppress_again_changes_nothing(database: SqlDatabase, engine: sa.Engine) -> None:
    database.suppress(KARI)
    before = snapshot(engine)
    again = database.suppress(KARI)
    assert again.counts == NONE, "already opted out, nothing left to delete"
    assert snapshot(engine) == before


# --- no rule: an operator --------------------------------------------------------------------


def test_a_dataset_without_the_rule_asks_an_operator(engine: sa.Engine, tmp_path: Path) -> None:
    bare = demo_text(without=("rectify:", "restrict:", "suppress:"))
    database = over(engine, write_dataset(tmp_path, bare))
    before = snapshot(engine)
    calls: dict[str, Callable[[], RightOutcome]] = {
        "rectify": lambda: database.rectify(KARI, FIXED),
        "restrict": lambda: database.restrict(KARI),
        "lift restriction": lambda: database.lift_restriction(KARI),
        "suppress": lambda: database.suppress(KARI),
    }
    for operation, call in calls.items():
        with pytest.raises(NeedsOperator, match=f"{operation}: dataset 'app-db' declares no") as caught:
            call()
        assert caught.value.system == "app-db"
        assert "app-db" in caught.value.instructions
        assert_no_personal_data(caught.value)
    assert snapshot(engine) == before


def test_only_the_tables_with_the_rule_are_touched(engine: sa.Engine, tmp_path: Path) -> None:
    database = over(engine, write_dataset(tmp_path, demo_text(without=("suppress: {marketing_opt_in",))))
    outcome = database.suppress(KARI)
    assert outcome.counts == {**NONE, "marketing": 1}
    assert [row["marketing_opt_in"] for row in fields(database, KARI, "customer")] == [True]


# --- failures --------------------------------------------------------------------------------


def test_a_column_the_database_lacks_fails_before_anything_changes(engine: sa.Engine, tmp_path: Path) -> None:
    text = demo_text().replace("restrict: processing_restricted   ", "restrict: restricted_flag")
    database = over(engine, write_dataset(tmp_path, text))
    before = snapshot(engine)
    with pytest.raises(
        PermanentError, match=r"restrict: .*'customers' has no column\(s\) \['restricted_flag'\]"
    ):
        database.restrict(KARI)
    assert snapshot(engine) == before


def test_a_restrict_column_must_be_boolean(engine: sa.Engine, tmp_path: Path) -> None:
    text = demo_text().replace("restrict: processing_restricted   ", "restrict: city")
    with pytest.raises(PermanentError, match=r"customers\.city must be boolean to restrict"):
        over(engine, write_dataset(tmp_path, text)).check()


def test_check_schema_checks_restrict_columns_only_when_told_the_types() -> None:
    dataset = load_dataset(DATASET)
    schema = {rule.table: dict.fromkeys(rule.columns(), True) for rule in dataset.tables}
    check_schema(dataset, schema)
    flags = {"customers": {"processing_restricted", "marketing_opt_in"}, "orders": {"processing_restricted"}}
    check_schema(dataset, schema, booleans=flags)
    with pytest.raises(DatasetError, match=r"orders\.processing_restricted must be boolean"):
        check_schema(dataset, schema, booleans={**flags, "orders": set()})


def test_a_failure_midway_rolls_everything_back(engine: sa.Engine, tmp_path: Path) -> None:
    # customers are opted out first, then orders.order_number (NOT NULL) fails the transaction
    text = demo_text().replace(
        '"[erased]"}\n    restrict: processing_restricted\n',
        '"[erased]"}\n    suppress: {order_number: null}\n',
    )
    assert "order_number: null" in text
    database = over(engine, write_dataset(tmp_path, text))
    before = snapshot(engine)
    with pytest.raises(PermanentError, match=r"^suppress failed on the database \(") as caught:
        database.suppress(KARI)
    assert snapshot(engine) == before, "the opt-out, written first, is rolled back"
    assert_no_personal_data(caught.value)


def test_a_subject_without_identifiers_is_refused(database: SqlDatabase) -> None:
    with pytest.raises(PermanentError, match="identifiers"):
        database.restrict(Subject(name="Kari Nordmann"))


# --- load-time rules -------------------------------------------------------------------------

ROW = "  - {table: a, category: c, identify: {email: e}, erase: delete, "


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("rectify: {fax: f}}\n", r"tables\.0\.rectify\.fax"),
        ("rectify: {name: id}}\n", "'rectify' may not name its primary key or a reference column"),
        ("rectify: {name: n, email: n}}\n", r"'rectify' names column\(s\) \['n'\] more than once"),
        (
            "rectify: {name: p}, parent: {table: a, column: p}}\n",
            "'rectify' may not name its primary key or a reference",
        ),
        ("restrict: e}\n", "'restrict' may not name a key, identifying or rewritten column"),
        (
            "restrict: r, suppress: {r: false}}\n",
            "'restrict' may not name a key, identifying or rewritten column",
        ),
        ("restrict: [r]}\n", r"tables\.0\.restrict: Input should be a valid string"),
        ("suppress: remove}\n", "'suppress' is 'delete' or a non-empty mapping"),
        ("suppress: {}}\n", "'suppress' is 'delete' or a non-empty mapping"),
        ("suppress: {e: null}}\n", "'suppress' may not name an 'identify' column"),
        ("suppress: {id: 0}}\n", "'suppress' may not name its primary key"),
        (
            "suppress: delete}\n"
            "  - {table: b, category: c, parent: {table: a, column: a_id}, erase: delete}\n",
            r"table 'a' is referenced by \['b'\]: 'suppress: delete' would orphan",
        ),
        ("suppress: delete, references: [{table: a, column: r, follow: false}]}\n", r"referenced by \['a'\]"),
    ],
)
def test_load_dataset_names_a_bad_rights_rule(tmp_path: Path, rules: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(write_dataset(tmp_path, HEAD + ROW + rules))


def test_the_demo_dataset_declares_every_right() -> None:
    dataset = load_dataset(DATASET)
    assert [rule.table for rule in dataset.declaring("rectify")] == ["customers", "newsletter_subscriptions"]
    assert [rule.table for rule in dataset.declaring("restrict")] == ["customers", "orders"]
    assert {rule.table: rule.suppress for rule in dataset.declaring("suppress")} == {
        "customers": {"marketing_opt_in": False},
        "newsletter_subscriptions": "delete",
    }

"""The company's own product database, described by a dataset file ("sql" kind).

Any SQLAlchemy URL works. Which tables hold people, how rows are tied to the subject and how
each table is erased is declared in a dataset file; the rules are in :mod:`integrations.datasets`.
In short: rows match on ``identify`` columns (e-mail case-insensitively, phone as E.164), then
references are followed downwards (rows pointing at the subject's rows are the subject's, never
the row they point at) to a fixpoint, so self-references and cycles are fine.

How it runs is in :mod:`integrations.sql_rows`: primary keys are collected in Python sets,
reading in batches of ``batch_size`` (``IN (:batch)`` chunks, streamed results); erasure is a few
set-based ``UPDATE``/``DELETE ... WHERE pk IN (:batch)`` statements per table, never one per row,
all in **one transaction**: any failure rolls the whole erasure back. Lookup counts and export
use the same keys, so the three always agree.

Counts: ``lookup`` and ``erase`` report rows per category. Anonymised rows (kept, e.g. orders
for bookkeeping) count as handled in ``ErasureOutcome.counts``; ``retained`` stays empty,
because what is left holds no personal data of the subject and the legal basis for keeping
it lives in the processing register, not here.

Rectification, restriction and suppression (:mod:`integrations.rights`) find the subject's rows
exactly as ``lookup`` does, then change them with the same set-based statements in one
transaction, only in the tables whose dataset entry declares the rule (``rectify``, ``restrict``,
``suppress``). A dataset where no table declares it raises :class:`NeedsOperator`: the flow asks
an operator instead of skipping the system. ``RightOutcome.counts`` are the subject's rows
changed, by category (rows already holding the value are left alone and not counted), so a
second call changes nothing and reports zero, as the vendor integrations do.

Queries are SQLAlchemy Core on reflected tables with bound parameters only.

Errors are translated here, once: connection trouble (``OperationalError``, ``InterfaceError``,
pool timeouts, disconnects) becomes :class:`RetryableError`, every other SQLAlchemy or driver
error and a dataset that does not fit the database become :class:`PermanentError`. Driver
messages carry bound parameters and row values (personal data), so the translated error says
only the operation, the error class and the driver's error code, and is raised ``from None``:
the original stays reachable as ``__context__`` for a debugger but is not printed in tracebacks.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr
from sqlalchemy.dialects.mysql import TINYINT

from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.datasets import Ability, Dataset, DatasetError, TableRule, check_schema, load_dataset
from integrations.errors import NeedsOperator, PermanentError, RetryableError
from integrations.rights import Corrections, RightOutcome
from integrations.sql_rows import Keys, collect_keys, delete_keys, erase_keys, read_rows, update_keys

__all__ = ["SqlConfig", "SqlDatabase", "from_config"]

Scalar = str | int | float | bool | None
_RETRYABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError)
_BY_HAND = {  # what an operator does when the dataset declares no rule; no personal data
    "rectify": "Correct the subject's name, e-mail or phone by hand in {system}, or record that it holds "
    "none of them (its dataset file declares no 'rectify' columns).",
    "restrict": "Mark the subject's records in {system} restricted by hand, so they are stored but not "
    "processed (its dataset file declares no 'restrict' column).",
    "lift restriction": "Remove the restriction mark from the subject's records in {system} by hand "
    "(its dataset file declares no 'restrict' column).",
    "suppress": "Unsubscribe the subject and opt them out of direct marketing in {system} by hand, or record "
    "that it sends none (its dataset file declares no 'suppress' rule).",
}


class SqlConfig(BaseModel):
    """Where the database is and which dataset file describes it."""

    url: SecretStr
    dataset: Path


class SqlDatabase:
    """An internal SQL database holding personal data, as one :class:`~integrations.base.System`."""

    kind: str = "sql"

    def __init__(self, name: str, *, engine: sa.Engine, dataset: Dataset, batch_size: int = 500) -> None:
        self.name = name
        self._engine = engine
        self._dataset = dataset
        self._batch_size = batch_size
        self._tables: dict[str, sa.Table] | None = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Connect, reflect the dataset's tables and check they have the named columns."""
        with self._edge("check"), self._engine.connect() as conn:
            self._reflect()
            conn.execute(sa.select(1))

    def lookup(self, subject: Subject) -> LookupResult:
        """Count the subject's rows, by category."""
        self._require_identifier(subject)
        with self._edge("lookup"), self._engine.connect() as conn:
            keys = self._collect(conn, subject)
        return LookupResult(system=self.name, counts=self._by_category({t: len(k) for t, k in keys.items()}))

    def export(self, subject: Subject) -> Export:
        """Every row of the subject's, all columns, as JSON-friendly records."""
        self._require_identifier(subject)
        records: list[Record] = []
        with self._edge("export"), self._engine.connect() as conn:
            keys = self._collect(conn, subject)
            for rule in self._dataset.ordered():
                table = self._reflect()[rule.table]
                rows = read_rows(conn, rule, table, keys[rule.table], self._batch_size)
                records.extend(_record(rule, table, row) for row in rows)
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Delete or anonymise the subject's rows in one transaction, set-based, children first."""
        self._require_identifier(subject)
        with self._edge("erase"), self._engine.begin() as conn:
            keys = self._collect(conn, subject)
            handled = erase_keys(conn, self._dataset, self._reflect(), keys, self._batch_size)
        return ErasureOutcome(system=self.name, method=self._method(), counts=self._by_category(handled))

    def rectify(self, subject: Subject, corrections: Corrections) -> RightOutcome:
        """Overwrite the ``rectify`` columns of the corrected attributes in the subject's rows."""
        self._require_rule("rectify", "rectify")
        values = {rule.table: _corrected(rule, corrections) for rule in self._dataset.declaring("rectify")}
        return self._change("rectify", "update-rows", subject, values)

    def restrict(self, subject: Subject) -> RightOutcome:
        """Set the ``restrict`` column true in the subject's rows."""
        self._require_rule("restrict", "restrict")
        return self._change("restrict", "flag-rows", subject, self._flags(True))

    def lift_restriction(self, subject: Subject) -> RightOutcome:
        """Set the ``restrict`` column false in the subject's rows."""
        self._require_rule("restrict", "lift restriction")
        return self._change("lift restriction", "flag-rows", subject, self._flags(False))

    def suppress(self, subject: Subject) -> RightOutcome:
        """Delete the subject's rows in ``suppress: delete`` tables, overwrite the columns in the others."""
        self._require_rule("suppress", "suppress")
        rules = self._dataset.declaring("suppress")
        values = {rule.table: rule.suppress for rule in rules if isinstance(rule.suppress, dict)}
        deleted = [rule.table for rule in rules if rule.suppress == "delete"]
        return self._change("suppress", "delete-or-update-rows", subject, values, deleted)

    def close(self) -> None:
        """Close the engine's pooled connections."""
        self._engine.dispose()

    def _change(
        self,
        operation: str,
        method: str,
        subject: Subject,
        values: Mapping[str, Mapping[str, Any]],
        deleted: Sequence[str] = (),
    ) -> RightOutcome:
        """Find the subject's rows as ``lookup`` does, then update and delete them in one transaction."""
        self._require_identifier(subject)
        with self._edge(operation), self._engine.begin() as conn:
            keys = self._collect(conn, subject)
            tables = self._reflect()
            updated = update_keys(conn, self._dataset, tables, keys, values, self._batch_size)
            removed = delete_keys(conn, self._dataset, tables, keys, deleted, self._batch_size)
        changed = {table: updated[table] + removed[table] for table in keys}
        return RightOutcome(system=self.name, method=method, counts=self._by_category(changed))

    def _flags(self, restricted: bool) -> dict[str, dict[str, Any]]:
        """``{table: {restrict column: restricted}}`` for every table with a ``restrict`` rule."""
        return {rule.table: {str(rule.restrict): restricted} for rule in self._dataset.declaring("restrict")}

    def _require_rule(self, ability: Ability, operation: str) -> None:
        """Hand the step to an operator when no table of the dataset declares ``ability``."""
        if not self._dataset.declaring(ability):
            raise NeedsOperator(
                f"{operation}: dataset {self._dataset.name!r} declares no '{ability}' rule",
                system=self.name,
                instructions=_BY_HAND[operation].format(system=self.name),
            )

    def _collect(self, conn: sa.Connection, subject: Subject) -> Keys:
        """The primary keys of the subject's rows, by table."""
        return collect_keys(conn, self._dataset, self._reflect(), subject, self._batch_size)

    def _by_category(self, per_table: dict[str, int]) -> dict[str, int]:
        """Per-table row counts summed by category, every category present."""
        counts = dict.fromkeys(self._categories(), 0)
        for rule in self._dataset.tables:
            counts[rule.category] += per_table.get(rule.table, 0)
        return counts

    def _require_identifier(self, subject: Subject) -> None:
        """Refuse to answer "nothing found" for a subject the dataset cannot match at all."""
        if not any(getattr(subject, attribute) for attribute in self._dataset.attributes()):
            wanted = ", ".join(sorted(self._dataset.attributes()))
            message = f"subject has none of the identifiers this dataset matches on ({wanted})"
            raise PermanentError(message, system=self.name)

    def _reflect(self) -> dict[str, sa.Table]:
        """Reflect the dataset's tables once and check them against the dataset."""
        with self._lock:
            if self._tables is None:
                wanted = {rule.table for rule in self._dataset.tables}
                metadata = sa.MetaData()
                metadata.reflect(self._engine, only=lambda name, _: name in wanted)
                tables = {table.name: table for table in metadata.tables.values()}
                nullable = {name: _nullability(table) for name, table in tables.items()}
                check_schema(self._dataset, nullable, booleans={n: _booleans(t) for n, t in tables.items()})
                self._tables = tables
            return self._tables

    def _categories(self) -> list[str]:
        """Every category in the dataset, in dataset order."""
        return [rule.category for rule in self._dataset.tables]

    def _method(self) -> str:
        """``delete``, ``anonymise`` or ``delete+anonymise``, from the dataset."""
        used = {rule.erase for rule in self._dataset.tables}
        return "+".join(method for method in ("delete", "anonymise") if method in used)

    @contextmanager
    def _edge(self, operation: str) -> Iterator[None]:
        """Translate SQLAlchemy and dataset errors into the integration error tree, PII-free."""
        try:
            yield
        except DatasetError as exc:
            raise PermanentError(f"{operation}: {exc}", system=self.name) from exc
        except _RETRYABLE as exc:
            raise RetryableError(_summary(operation, exc), system=self.name) from None
        except sa.exc.SQLAlchemyError as exc:
            raise PermanentError(_summary(operation, exc), system=self.name) from None


def from_config(name: str, config: SqlConfig) -> SqlDatabase:
    """Build a :class:`SqlDatabase` from its configuration; the dataset is validated here."""
    dataset = load_dataset(config.dataset)
    engine = sa.create_engine(config.url.get_secret_value(), pool_pre_ping=True, hide_parameters=True)
    return SqlDatabase(name, engine=engine, dataset=dataset)


def _record(rule: TableRule, table: sa.Table, row: sa.Row[object]) -> Record:
    """One row as a :class:`Record`, every column converted to a JSON-friendly value."""
    fields = {column.name: _plain(row._mapping[column], column) for column in table.columns}
    return Record(category=rule.category, record_id=str(fields[rule.primary_key]), fields=fields)


def _plain(value: object, column: sa.Column[object]) -> Scalar:
    """Dates to ISO strings, decimals to strings, bytes to base64; booleans (and ``TINYINT(1)``) to bool."""
    if isinstance(value, int) and _is_boolean(column.type):
        return bool(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # Decimal, UUID, timedelta, enums: their canonical text


def _is_boolean(type_: sa.types.TypeEngine[object]) -> bool:
    """A BOOLEAN column, or MySQL/MariaDB's stand-in for one, ``TINYINT(1)``."""
    return isinstance(type_, sa.Boolean) or (isinstance(type_, TINYINT) and type_.display_width == 1)


def _corrected(rule: TableRule, corrections: Corrections) -> dict[str, str]:
    """``{column: corrected value}`` for the corrected attributes ``rule`` has a column for."""
    return {
        rule.rectify[field]: getattr(corrections, field)
        for field in corrections.fields
        if field in rule.rectify
    }


def _booleans(table: sa.Table) -> set[str]:
    """The boolean columns of ``table``, for :func:`check_schema`."""
    return {column.name for column in table.columns if _is_boolean(column.type)}


def _nullability(table: sa.Table) -> dict[str, bool]:
    """Column name -> nullable, for :func:`check_schema`."""
    return {column.name: bool(column.nullable) for column in table.columns}


def _summary(operation: str, exc: sa.exc.SQLAlchemyError) -> str:
    """What failed, without the driver's message (it carries parameters and values)."""
    orig = getattr(exc, "orig", None)
    cause = type(orig).__name__ if orig is not None else type(exc).__name__
    code = _error_code(orig)
    return f"{operation} failed on the database ({cause}{f', code {code}' if code else ''})"


def _error_code(orig: object) -> str | None:
    """The driver's error code (SQLSTATE, SQLite error name or MySQL number), never its message."""
    for attribute in ("sqlstate", "sqlite_errorname"):
        code = getattr(orig, attribute, None)
        if isinstance(code, str):
            return code
    args = getattr(orig, "args", ())
    return str(args[0]) if args and type(args[0]) is int else None

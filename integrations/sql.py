"""The company's own product database, described by a dataset file ("sql" kind).

Any SQLAlchemy URL works. Which tables hold people, how rows are tied to the subject and how
each table is erased is declared in a dataset file; the rules are in :mod:`integrations.datasets`.
In short: rows match on ``identify`` columns (e-mail case-insensitively, phone as E.164) or by
following ``parent`` foreign keys transitively; erasure deletes or anonymises them in one
transaction, children before parents.

Queries are SQLAlchemy Core on reflected tables with bound parameters only; related rows are
selected with nested ``IN (SELECT ...)`` subqueries, so nothing is materialised in Python.

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr
from sqlalchemy.dialects.mysql import TINYINT

from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.datasets import Dataset, DatasetError, TableRule, check_schema, load_dataset
from integrations.errors import PermanentError, RetryableError

__all__ = ["SqlConfig", "SqlDatabase", "from_config"]

Scalar = str | int | float | bool | None
_RETRYABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError)


class SqlConfig(BaseModel):
    """Where the database is and which dataset file describes it."""

    url: SecretStr
    dataset: Path


class SqlDatabase:
    """An internal SQL database holding personal data, as one :class:`~integrations.base.System`."""

    kind: str = "sql"

    def __init__(self, name: str, *, engine: sa.Engine, dataset: Dataset) -> None:
        self.name = name
        self._engine = engine
        self._dataset = dataset
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
        counts = dict.fromkeys(self._categories(), 0)
        with self._edge("lookup"), self._engine.connect() as conn:
            for rule in self._dataset.ordered():
                query = (
                    sa.select(sa.func.count())
                    .select_from(self._table(rule))
                    .where(self._where(rule, subject))
                )
                counts[rule.category] += int(conn.execute(query).scalar_one())
        return LookupResult(system=self.name, counts=counts)

    def export(self, subject: Subject) -> Export:
        """Every row of the subject's, all columns, as JSON-friendly records."""
        self._require_identifier(subject)
        records: list[Record] = []
        with self._edge("export"), self._engine.connect() as conn:
            for rule in self._dataset.ordered():
                records.extend(self._export_table(conn, rule, subject))
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Delete or anonymise the subject's rows in one transaction, children first."""
        self._require_identifier(subject)
        counts = dict.fromkeys(self._categories(), 0)
        with self._edge("erase"), self._engine.begin() as conn:
            for rule in reversed(self._dataset.ordered()):
                with self._edge(f"erase of {rule.table}"):
                    counts[rule.category] += conn.execute(self._eraser(rule, subject)).rowcount
        return ErasureOutcome(system=self.name, method=self._method(), counts=counts)

    def close(self) -> None:
        """Close the engine's pooled connections."""
        self._engine.dispose()

    def _export_table(self, conn: sa.Connection, rule: TableRule, subject: Subject) -> list[Record]:
        """The subject's rows of one table, ordered by primary key."""
        table = self._table(rule)
        key = table.c[rule.primary_key]
        rows = conn.execute(sa.select(table).where(self._where(rule, subject)).order_by(key))
        return [_record(rule, table, row) for row in rows]

    def _eraser(self, rule: TableRule, subject: Subject) -> sa.Delete | sa.Update:
        """The DELETE or anonymising UPDATE for one table."""
        table = self._table(rule)
        if rule.erase == "delete":
            return sa.delete(table).where(self._where(rule, subject))
        values: dict[str, Scalar] = dict(rule.anonymise)
        if rule.detach and rule.parent:
            values[rule.parent.column] = None
        return sa.update(table).where(self._where(rule, subject)).values(values)

    def _where(self, rule: TableRule, subject: Subject) -> sa.ColumnElement[bool]:
        """Rows of ``rule``'s table that identify the subject or hang off a parent row that does."""
        table = self._table(rule)
        conditions = [
            _identifies(table.c[column], attribute, subject) for attribute, column in rule.identify.items()
        ]
        if rule.parent is not None:
            parent = self._dataset.rule(rule.parent.table)
            keys = sa.select(self._table(parent).c[parent.primary_key]).where(self._where(parent, subject))
            conditions.append(table.c[rule.parent.column].in_(keys))
        return sa.or_(sa.false(), *conditions)

    def _require_identifier(self, subject: Subject) -> None:
        """Refuse to answer "nothing found" for a subject the dataset cannot match at all."""
        if not any(getattr(subject, attribute) for attribute in self._dataset.attributes()):
            wanted = ", ".join(sorted(self._dataset.attributes()))
            message = f"subject has none of the identifiers this dataset matches on ({wanted})"
            raise PermanentError(message, system=self.name)

    def _table(self, rule: TableRule) -> sa.Table:
        """The reflected table for ``rule``."""
        return self._reflect()[rule.table]

    def _reflect(self) -> dict[str, sa.Table]:
        """Reflect the dataset's tables once and check them against the dataset."""
        with self._lock:
            if self._tables is None:
                wanted = {rule.table for rule in self._dataset.tables}
                metadata = sa.MetaData()
                metadata.reflect(self._engine, only=lambda name, _: name in wanted)
                tables = {table.name: table for table in metadata.tables.values()}
                check_schema(self._dataset, {name: _nullability(table) for name, table in tables.items()})
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


def _identifies(column: sa.Column[object], attribute: str, subject: Subject) -> sa.ColumnElement[bool]:
    """``lower(column) = :email`` or ``column = :phone``; false when the subject lacks it."""
    value: str | None = getattr(subject, attribute)
    if not value:
        return sa.false()
    if attribute == "email":
        return sa.func.lower(column) == value.lower()
    return column == value


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

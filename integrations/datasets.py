"""Dataset files: where an internal SQL database keeps personal data, and how to erase it.

A dataset is a small YAML file (see ``datasets/app_db.yaml``)::

    name: app-db
    tables:
      - table: customers            # one entry per table that holds personal data
        category: customer          # data category from the processing register
        primary_key: id             # default "id"; a single column
        identify: {email: email, phone: phone}   # subject attribute -> column
        erase: delete               # delete | anonymise
      - table: orders
        category: order
        parent: {table: customers, column: customer_id}   # orders.customer_id -> customers.id
        erase: anonymise
        anonymise: {shipping_address: null, notes: "[erased]"}   # column -> replacement
        detach: true                # on erasure, set orders.customer_id to NULL

The rules, checked when the file is loaded (:func:`load_dataset`):

* A table's rows belong to the subject when a column in ``identify`` matches the subject
  (``email`` case-insensitively, ``phone`` as the E.164 string, so phone columns must hold
  E.164), or when its ``parent`` column points at a parent row that belongs to the subject.
  ``parent`` always references the parent's primary key; links are followed transitively.
  Every table needs ``identify``, ``parent`` or both; a table has at most one parent, and
  parent links may not form a cycle (so no self-referencing tables).
* ``erase: delete`` deletes the rows. ``erase: anonymise`` keeps them and overwrites the
  columns in ``anonymise``; it must overwrite every ``identify`` column, never the primary key.
* A deleted table whose child is kept (``anonymise``) must let go of it: the child needs
  ``detach: true``, which sets its ``parent`` column to NULL (the column must be nullable).
  ``detach`` is only valid on anonymised tables with a parent.
* Erasure runs in one transaction, children before parents, so foreign keys hold throughout.

Whether the named tables and columns exist is checked against the live database by
:func:`check_schema`, once the tables are reflected.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "Dataset",
    "DatasetError",
    "ParentLink",
    "TableRule",
    "check_schema",
    "load_dataset",
]

Attribute = Literal["email", "phone"]
Replacement = str | int | float | bool | None
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DatasetError(ValueError):
    """A dataset file that is unreadable or breaks the rules; the message names the problem."""


class ParentLink(BaseModel):
    """A foreign key from this table's ``column`` to the primary key of ``table``."""

    model_config = _FROZEN
    table: str
    column: str


class TableRule(BaseModel):
    """One table holding personal data: how to find the subject's rows and how to erase them."""

    model_config = _FROZEN
    table: str
    category: str
    primary_key: str = "id"
    identify: dict[Attribute, str] = Field(default_factory=dict)
    parent: ParentLink | None = None
    erase: Literal["delete", "anonymise"]
    anonymise: dict[str, Replacement] = Field(default_factory=dict)
    detach: bool = False

    @model_validator(mode="after")
    def _check_rule(self) -> TableRule:
        """Apply the single-table rules from the module docstring."""
        if not self.identify and self.parent is None:
            raise ValueError(f"table {self.table!r} needs 'identify', 'parent' or both")
        if self.erase == "delete" and (self.anonymise or self.detach):
            raise ValueError(f"table {self.table!r} is deleted: 'anonymise' and 'detach' do not apply")
        if self.erase == "anonymise":
            self._check_anonymise()
        return self

    def _check_anonymise(self) -> None:
        """An anonymised table overwrites its identifying columns and keeps its key."""
        if not self.anonymise:
            raise ValueError(f"table {self.table!r} is anonymised but lists no columns in 'anonymise'")
        if self.primary_key in self.anonymise:
            raise ValueError(f"table {self.table!r} may not anonymise its primary key {self.primary_key!r}")
        kept = sorted(set(self.identify.values()) - set(self.anonymise))
        if kept:
            raise ValueError(f"table {self.table!r} is anonymised but keeps identifying column(s) {kept}")
        if self.detach and self.parent is None:
            raise ValueError(f"table {self.table!r} has 'detach' but no parent")

    def columns(self) -> set[str]:
        """Every column this rule names."""
        named = {self.primary_key, *self.identify.values(), *self.anonymise}
        return named | ({self.parent.column} if self.parent else set())


class Dataset(BaseModel):
    """The tables of one database that hold personal data, parents before children."""

    model_config = _FROZEN
    name: str
    tables: tuple[TableRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_links(self) -> Dataset:
        """Apply the cross-table rules: unique tables, known parents, no cycles, detach."""
        names = [rule.table for rule in self.tables]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"table(s) listed twice: {duplicates}")
        for rule in self.tables:
            self._check_parent(rule)
        return self

    def _check_parent(self, rule: TableRule) -> None:
        """The parent exists, the chain ends, and a deleted parent releases a kept child."""
        if rule.parent is None:
            return
        if rule.parent.table not in {other.table for other in self.tables}:
            raise ValueError(f"table {rule.table!r} has unknown parent table {rule.parent.table!r}")
        self.ancestors(rule.table)
        parent = self.rule(rule.parent.table)
        if parent.erase == "delete" and rule.erase == "anonymise" and not rule.detach:
            raise ValueError(
                f"table {parent.table!r} is deleted but its child {rule.table!r} is kept (anonymised): "
                f"set 'detach: true' on {rule.table!r} or anonymise {parent.table!r}"
            )

    def rule(self, table: str) -> TableRule:
        """The rule for ``table``."""
        return next(rule for rule in self.tables if rule.table == table)

    def ancestors(self, table: str) -> list[str]:
        """Parent, grandparent, ... of ``table``; raises ``ValueError`` on a cycle."""
        chain: list[str] = []
        link = self.rule(table).parent
        while link is not None:
            if link.table == table or link.table in chain:
                raise ValueError(f"parent links form a cycle: {' -> '.join([table, *chain, link.table])}")
            chain.append(link.table)
            link = self.rule(link.table).parent
        return chain

    def ordered(self) -> tuple[TableRule, ...]:
        """The rules with every parent before its children (reverse it to erase)."""
        return tuple(sorted(self.tables, key=lambda rule: len(self.ancestors(rule.table))))

    def attributes(self) -> set[str]:
        """Subject attributes any table is identified by."""
        return {attribute for rule in self.tables for attribute in rule.identify}


def load_dataset(path: Path | str) -> Dataset:
    """Read and validate a dataset file; raise :class:`DatasetError` naming the problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read dataset file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return Dataset.model_validate(raw)
    except ValidationError as exc:
        raise DatasetError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as one line: ``tables.1.erase: Input should be ...; ...``."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def check_schema(dataset: Dataset, schema: Mapping[str, Mapping[str, bool]]) -> None:
    """Raise :class:`DatasetError` unless every named table and column exists.

    ``schema`` maps each table in the database to its columns, each to whether it is nullable.
    """
    for rule in dataset.tables:
        if rule.table not in schema:
            raise DatasetError(f"dataset {dataset.name!r}: table {rule.table!r} is not in the database")
        columns = schema[rule.table]
        missing = sorted(rule.columns() - set(columns))
        if missing:
            raise DatasetError(f"dataset {dataset.name!r}: table {rule.table!r} has no column(s) {missing}")
        if rule.detach and rule.parent and not columns[rule.parent.column]:
            raise DatasetError(
                f"dataset {dataset.name!r}: {rule.table}.{rule.parent.column} must be nullable to detach"
            )

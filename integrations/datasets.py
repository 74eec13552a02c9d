"""Dataset files: where an internal SQL database keeps personal data, and how to erase it.

A dataset is a small YAML file (see ``datasets/app_db.yaml``)::

    name: app-db
    tables:
      - table: customers            # one entry per table that holds personal data
        category: customer          # data category from the processing register
        primary_key: id             # default "id"; a single column
        identify: {email: email, phone: phone}   # subject attribute -> column
        references:
          - {table: customers, column: merged_into, detach: true}   # self-reference
          - {table: customers, column: referred_by, follow: false}  # a pointer, not ownership
        erase: delete               # delete | anonymise
        rectify: {name: full_name, email: email, phone: phone}   # optional, see "Other rights"
        restrict: processing_restricted
        suppress: {marketing_opt_in: false}
      - table: orders
        category: order
        references:                 # orders.customer_id holds a customers.id
          - {table: customers, column: customer_id, detach: true}
        erase: anonymise
        anonymise: {shipping_address: null, notes: "[erased]"}   # column -> replacement

``parent: {table, column}`` (with an optional table-level ``detach: true``) is shorthand for a
single ``references`` entry.

**Which rows are the subject's.** A row belongs to the subject when an ``identify`` column
matches (``email`` case-insensitively, ``phone`` as the E.164 string, so phone columns must hold
E.164), or when one of its *followed* references points at a row that belongs to the subject.
A reference ``{table: T, column: C}`` listed under table ``X`` says "``X.C`` holds a primary key
of ``T``", and it is followed **downwards only**, from the referenced row to the referencing
row: the orders of the subject's customer row are the subject's, but the product an order
points at is never the subject's because of that order. So a shared parent (a product
catalogue) is only ever reached if it is itself listed with its own way to the subject.
References are followed transitively to a fixpoint, so self-references and cycles between
tables are allowed. ``follow: false`` declares a mere pointer (``customers.referred_by``): the
pointing row is someone else's; when the row pointed at is deleted, the column is set to NULL.

**Load-time rules** (:func:`load_dataset`):

* Every table needs ``identify`` or a followed reference, and must be reachable from a table
  with ``identify`` through followed references. Referenced tables must be in the dataset.
* ``erase: delete`` deletes the rows. ``erase: anonymise`` keeps them and overwrites the
  columns in ``anonymise``; it must overwrite every ``identify`` column, never the primary key.
* ``detach: true`` on a followed reference sets that column to NULL in the subject's rows before
  anything is deleted (the column must be nullable, checked by :func:`check_schema`). A kept
  (anonymised) table must detach every reference to a deleted table.
* Among deleted tables, the references that are not detached must not form a cycle (this
  includes self-references): detach one reference of every cycle. Erasure then deletes
  children before parents, so foreign keys hold after every statement on every database.

**Other rights** (:mod:`integrations.rights`), each optional and declared per table; a table
without the rule is left alone, and a dataset where no table has it cannot do it (the
integration asks an operator instead):

* ``rectify: {name: C, email: C, phone: C}`` (Art. 16): subject attribute -> the column that
  holds it, overwritten with the corrected value in the subject's rows. A column is named once,
  and is never the primary key or a reference column.
* ``restrict: C`` (Art. 18): a boolean column, set true in the subject's rows on restriction and
  false when it is lifted. Not the primary key, an ``identify``, reference, ``rectify`` or
  ``suppress`` column.
* ``suppress: delete`` or ``suppress: {C: value, ...}`` (Art. 21(2)): stop direct marketing by
  deleting the subject's rows (only in a table no other table references, so nothing is
  orphaned) or by overwriting columns (an opt-in flag set false). Never the primary key, an
  ``identify`` column (the rows must stay findable, so a retry finds them again) or a reference.

Whether the named tables and columns exist, and whether a ``restrict`` column is boolean, is
checked against the live database by :func:`check_schema`, once the tables are reflected.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Dataset",
    "DatasetError",
    "Reference",
    "TableRule",
    "check_schema",
    "load_dataset",
]

Attribute = Literal["email", "phone"]
Corrected = Literal["name", "email", "phone"]
Ability = Literal["rectify", "restrict", "suppress"]
Replacement = str | int | float | bool | None
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DatasetError(ValueError):
    """A dataset file that is unreadable or breaks the rules; the message names the problem."""


class Reference(BaseModel):
    """This table's ``column`` holds a primary key of ``table``; see the module docstring."""

    model_config = _FROZEN
    table: str
    column: str
    follow: bool = True
    detach: bool = False

    @model_validator(mode="after")
    def _check_reference(self) -> Reference:
        """A pointer that is not followed is released on erasure, never detached."""
        if self.detach and not self.follow:
            raise ValueError(f"reference via {self.column!r} is not followed: 'detach' does not apply")
        return self


class TableRule(BaseModel):
    """One table holding personal data: how to find, erase, rectify, restrict and suppress its rows."""

    model_config = _FROZEN
    table: str
    category: str
    primary_key: str = "id"
    identify: dict[Attribute, str] = Field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    erase: Literal["delete", "anonymise"]
    anonymise: dict[str, Replacement] = Field(default_factory=dict)
    rectify: dict[Corrected, str] = Field(default_factory=dict)
    restrict: str | None = None
    suppress: Literal["delete"] | dict[str, Replacement] | None = None

    @field_validator("suppress", mode="before")
    @classmethod
    def _suppress_shape(cls, value: Any) -> Any:
        """One clear message instead of pydantic's two (one per member of the union)."""
        if value is None or value == "delete" or (isinstance(value, dict) and value):
            return value
        raise ValueError("'suppress' is 'delete' or a non-empty mapping {column: value}")

    @model_validator(mode="before")
    @classmethod
    def _parent_shorthand(cls, data: Any) -> Any:
        """``parent: {...}`` plus an optional ``detach`` is one entry of ``references``."""
        if not isinstance(data, dict) or not {"parent", "detach"} & set(data):
            return data
        data = dict(data)
        if "parent" not in data:
            raise ValueError(f"table {data.get('table')!r}: table-level 'detach' goes with 'parent'")
        if "references" in data:
            raise ValueError(f"table {data.get('table')!r}: use 'parent' or 'references', not both")
        parent, detach = data.pop("parent"), data.pop("detach", False)
        data["references"] = [{**parent, "detach": detach} if isinstance(parent, dict) else parent]
        return data

    @model_validator(mode="after")
    def _check_rule(self) -> TableRule:
        """Apply the single-table rules from the module docstring."""
        if not self.identify and not self.followed():
            raise ValueError(f"table {self.table!r} needs 'identify', a followed reference or both")
        if self.erase == "delete" and self.anonymise:
            raise ValueError(f"table {self.table!r} is deleted: 'anonymise' does not apply")
        if self.erase == "anonymise":
            self._check_anonymise()
        self._check_rights()
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

    def _check_rights(self) -> None:
        """``rectify``, ``restrict`` and ``suppress`` leave keys, references and each other alone."""
        keys = {self.primary_key} | {ref.column for ref in self.references}
        rectified = list(self.rectify.values())
        twice = sorted({column for column in rectified if rectified.count(column) > 1})
        if twice:
            raise ValueError(f"table {self.table!r}: 'rectify' names column(s) {twice} more than once")
        _refuse(self.table, "rectify", set(rectified), keys, "its primary key or a reference column")
        suppressed = set(self.suppress) if isinstance(self.suppress, dict) else set()
        _refuse(self.table, "suppress", suppressed, keys, "its primary key or a reference column")
        _refuse(self.table, "suppress", suppressed, set(self.identify.values()), "an 'identify' column")
        if self.restrict is not None:
            taken = keys | set(self.identify.values()) | set(rectified) | suppressed
            _refuse(self.table, "restrict", {self.restrict}, taken, "a key, identifying or rewritten column")

    def followed(self) -> tuple[Reference, ...]:
        """The references that make a row the subject's."""
        return tuple(ref for ref in self.references if ref.follow)

    def detached(self) -> tuple[str, ...]:
        """Columns set to NULL in the subject's rows on erasure."""
        return tuple(ref.column for ref in self.references if ref.detach)

    def columns(self) -> set[str]:
        """Every column this rule names."""
        named = {self.primary_key, *self.identify.values(), *self.anonymise, *self.rectify.values()}
        named |= set(self.suppress) if isinstance(self.suppress, dict) else set()
        named |= {self.restrict} if self.restrict else set()
        return named | {ref.column for ref in self.references}

    def declares(self, ability: Ability) -> bool:
        """Whether this table has a rule for ``ability``."""
        return bool(getattr(self, ability))


def _refuse(table: str, rule: str, columns: set[str], forbidden: set[str], what: str) -> None:
    """Raise ``ValueError`` when ``rule`` names one of the ``forbidden`` columns."""
    clash = sorted(columns & forbidden)
    if clash:
        raise ValueError(f"table {table!r}: '{rule}' may not name {what} ({', '.join(clash)})")


class Dataset(BaseModel):
    """The tables of one database that hold personal data."""

    model_config = _FROZEN
    name: str
    tables: tuple[TableRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_links(self) -> Dataset:
        """Apply the cross-table rules: unique tables, known references, reachability, no cycles."""
        names = [rule.table for rule in self.tables]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"table(s) listed twice: {duplicates}")
        for rule in self.tables:
            self._check_references(rule)
        self._check_reachable()
        self._check_suppress_deletes()
        self.deletion_order()
        return self

    def _check_references(self, rule: TableRule) -> None:
        """Referenced tables exist, and a kept table lets go of deleted ones."""
        for ref in rule.references:
            if ref.table not in {other.table for other in self.tables}:
                raise ValueError(f"table {rule.table!r} references unknown table {ref.table!r}")
            target = self.rule(ref.table)
            if ref.follow and target.erase == "delete" and rule.erase == "anonymise" and not ref.detach:
                raise ValueError(
                    f"table {target.table!r} is deleted but its child {rule.table!r} is kept (anonymised): "
                    f"set 'detach: true' on {rule.table}.{ref.column} or anonymise {target.table!r}"
                )

    def _check_reachable(self) -> None:
        """Every table can be reached from an ``identify`` table through followed references."""
        reached = {rule.table for rule in self.tables if rule.identify}
        grew = True
        while grew:
            more = {r.table for r in self.tables if any(f.table in reached for f in r.followed())}
            grew = not more <= reached
            reached |= more
        lost = [rule.table for rule in self.tables if rule.table not in reached]
        if lost:
            raise ValueError(f"table(s) {lost} cannot be reached from a table with 'identify'")

    def _check_suppress_deletes(self) -> None:
        """``suppress: delete`` only where no row of another table (or its own) points at the rows."""
        for rule in self.tables:
            pointing = sorted(
                {r.table for r in self.tables for ref in r.references if ref.table == rule.table}
            )
            if rule.suppress == "delete" and pointing:
                raise ValueError(
                    f"table {rule.table!r} is referenced by {pointing}: 'suppress: delete' would orphan "
                    "their rows; opt out with 'suppress: {column: value}' instead"
                )

    def declaring(self, ability: Ability) -> tuple[TableRule, ...]:
        """The tables with a rule for ``ability``, in dataset order."""
        return tuple(rule for rule in self.tables if rule.declares(ability))

    def rule(self, table: str) -> TableRule:
        """The rule for ``table``."""
        return next(rule for rule in self.tables if rule.table == table)

    def followers(self, table: str) -> list[tuple[TableRule, Reference]]:
        """Followed references that point at ``table``, with the rule that holds each."""
        return [(rule, ref) for rule in self.tables for ref in rule.followed() if ref.table == table]

    def releases(self) -> list[tuple[TableRule, Reference]]:
        """Pointers (``follow: false``) at deleted tables: set to NULL before deleting."""
        return [
            (rule, ref)
            for rule in self.tables
            for ref in rule.references
            if not ref.follow and self.rule(ref.table).erase == "delete"
        ]

    def ordered(self) -> tuple[TableRule, ...]:
        """Referenced tables before the tables referencing them, cycles broken in file order."""
        after = {rule.table: {r.table for r in rule.followed()} - {rule.table} for rule in self.tables}
        return tuple(self.rule(name) for name in _sort(after, strict=False))

    def deletion_order(self) -> tuple[TableRule, ...]:
        """Deleted tables, children before parents; raises ``ValueError`` naming a cycle."""
        deleted = {rule.table: rule for rule in self.tables if rule.erase == "delete"}
        before = {name: set[str]() for name in deleted}
        for rule in deleted.values():
            for ref in rule.followed():
                if not ref.detach and ref.table in deleted:
                    before[ref.table].add(rule.table)  # the child goes first
        return tuple(deleted[name] for name in _sort(before, strict=True))

    def attributes(self) -> set[str]:
        """Subject attributes any table is identified by."""
        return {attribute for rule in self.tables for attribute in rule.identify}


def _sort(after: Mapping[str, set[str]], *, strict: bool) -> list[str]:
    """Names so each comes after every name in ``after[name]``, ties in the given order.

    On a cycle: ``strict`` raises ``ValueError`` naming it, otherwise the first remaining
    name goes next.
    """
    done: list[str] = []
    waiting = list(after)
    while waiting:
        ready = [name for name in waiting if after[name] <= set(done)]
        if not ready and strict:
            raise ValueError(
                f"references among deleted tables form a cycle: {_cycle(after, waiting)}; "
                "set 'detach: true' on one of them (its column must be nullable)"
            )
        name = (ready or waiting)[0]
        done.append(name)
        waiting.remove(name)
    return done


def _cycle(after: Mapping[str, set[str]], waiting: Iterable[str]) -> str:
    """One cycle among ``waiting``, drawn as ``a -> b -> a``."""
    left = set(waiting)
    path = [min(left)]
    while True:
        step = min(after[path[-1]] & left)
        if step in path:
            return " -> ".join([*path[path.index(step) :], step])
        path.append(step)


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


def check_schema(
    dataset: Dataset,
    schema: Mapping[str, Mapping[str, bool]],
    *,
    booleans: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Raise :class:`DatasetError` unless every named table and column exists.

    ``schema`` maps each table in the database to its columns, each to whether it is nullable.
    Columns that erasure sets to NULL (detached references, released pointers) must be nullable.
    ``booleans`` maps each table to its boolean columns; when given, ``restrict`` columns must be
    among them.
    """
    nulled = {(rule.table, column) for rule in dataset.tables for column in rule.detached()}
    nulled |= {(rule.table, ref.column) for rule, ref in dataset.releases()}
    for rule in dataset.tables:
        if rule.table not in schema:
            raise DatasetError(f"dataset {dataset.name!r}: table {rule.table!r} is not in the database")
        columns = schema[rule.table]
        missing = sorted(rule.columns() - set(columns))
        if missing:
            raise DatasetError(f"dataset {dataset.name!r}: table {rule.table!r} has no column(s) {missing}")
    for table, column in sorted(nulled):
        if not schema[table][column]:
            raise DatasetError(
                f"dataset {dataset.name!r}: {table}.{column} must be nullable to detach or release it"
            )
    if booleans is None:
        return
    for rule in dataset.declaring("restrict"):
        if rule.restrict not in booleans.get(rule.table, ()):
            raise DatasetError(
                f"dataset {dataset.name!r}: {rule.table}.{rule.restrict} must be boolean to restrict"
            )

"""The subject's rows of an internal SQL database, by primary key: found in batches, erased set-based.

Used by :class:`integrations.sql.SqlDatabase`; the dataset rules are in :mod:`integrations.datasets`.

**Finding** (:func:`collect_keys`) is a fixpoint over primary keys held in Python sets. The
seeds are the rows whose ``identify`` columns match the subject. Each round then follows every
followed reference *downwards* from the keys that are new since the last round: for a reference
``X.C -> T`` it reads ``SELECT X.pk WHERE X.C IN (:batch)`` over the new ``T`` keys in chunks of
``batch_size``, streaming the answer (``yield_per``). It stops when a round finds no new key, so
self-references and cycles terminate, and a row is read at most once per reference.

**Erasing** (:func:`erase_keys`) runs inside the caller's transaction, a few statements per table
and chunk, never one per row:

1. anonymised tables: ``UPDATE ... SET <anonymise>, <detached> = NULL WHERE pk IN (:batch)``;
2. deleted tables: detached columns set to NULL the same way (this breaks cycles);
3. pointers (``follow: false``) at deleted rows: ``UPDATE ... SET C = NULL WHERE C IN (:batch)``;
4. ``DELETE ... WHERE pk IN (:batch)``, children before parents (:meth:`Dataset.deletion_order`).

After step 2 no remaining foreign key among the subject's rows can point at a row deleted
earlier, so every statement keeps foreign keys intact, even on MariaDB, which checks them row by
row. A foreign key the dataset does not declare still fails the statement, and the caller's
transaction rolls everything back.

**The other rights** (:func:`update_keys`, :func:`delete_keys`) run over the same keys inside
the caller's transaction and count rows *changed*, so a second call reports zero, as erasure
does. :func:`update_keys` first reads the named columns of the subject's rows
(``SELECT pk, <columns> WHERE pk IN (:batch)``) and compares them with the wanted values in
Python, exactly, then runs ``UPDATE ... SET <values> WHERE pk IN (:batch)`` over the rows that
differ. The comparison is not left to SQL because it would follow the column's collation:
MariaDB's default one would take a case-only correction ("kari" -> "Kari") for no change.
:func:`delete_keys` is ``DELETE ... WHERE pk IN (:batch)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from integrations.base import Subject
from integrations.datasets import Dataset, TableRule

__all__ = ["Key", "Keys", "collect_keys", "delete_keys", "erase_keys", "read_rows", "update_keys"]

Key = Any  # a primary-key value as the driver returns it: int, str, UUID, ...
Keys = dict[str, set[Key]]
_KEYS: sa.BindParameter[Any] = sa.bindparam("keys", expanding=True)


def collect_keys(
    conn: sa.Connection, dataset: Dataset, tables: Mapping[str, sa.Table], subject: Subject, batch_size: int
) -> Keys:
    """The primary keys of the subject's rows, by table: identity seeds, then references to a fixpoint."""
    found: Keys = {rule.table: set() for rule in dataset.tables}
    fresh = {
        rule.table: _seeds(conn, rule, tables[rule.table], subject, batch_size) for rule in dataset.tables
    }
    while any(fresh.values()):
        for table, keys in fresh.items():
            found[table] |= keys
        fresh = _follow(conn, dataset, tables, fresh, batch_size)
        fresh = {table: keys - found[table] for table, keys in fresh.items()}
    return found


def _seeds(
    conn: sa.Connection, rule: TableRule, table: sa.Table, subject: Subject, batch_size: int
) -> set[Key]:
    """Keys of the rows whose ``identify`` columns match the subject."""
    matches = [
        _identifies(table.c[column], attribute, subject)
        for attribute, column in rule.identify.items()
        if getattr(subject, attribute)
    ]
    if not matches:
        return set()
    query = sa.select(table.c[rule.primary_key]).where(sa.or_(*matches))
    return set(_stream(conn, query, {}, batch_size))


def _follow(
    conn: sa.Connection, dataset: Dataset, tables: Mapping[str, sa.Table], fresh: Keys, batch_size: int
) -> Keys:
    """Keys of rows pointing, through a followed reference, at one of the ``fresh`` keys."""
    reached: Keys = {rule.table: set() for rule in dataset.tables}
    for target, keys in fresh.items():
        for rule, ref in dataset.followers(target) if keys else ():
            table = tables[rule.table]
            query = sa.select(table.c[rule.primary_key]).where(table.c[ref.column].in_(_KEYS))
            for chunk in chunks(keys, batch_size):
                reached[rule.table].update(_stream(conn, query, {"keys": chunk}, batch_size))
    return reached


def read_rows(
    conn: sa.Connection, rule: TableRule, table: sa.Table, keys: Iterable[Key], batch_size: int
) -> Iterator[sa.Row[Any]]:
    """Whole rows for ``keys``, in primary-key order, one chunk at a time."""
    key = table.c[rule.primary_key]
    query = sa.select(table).where(key.in_(_KEYS)).order_by(key)
    for chunk in chunks(keys, batch_size):
        yield from conn.execute(query, {"keys": chunk}).all()


def erase_keys(
    conn: sa.Connection, dataset: Dataset, tables: Mapping[str, sa.Table], keys: Keys, batch_size: int
) -> dict[str, int]:
    """Anonymise, detach, release and delete the rows in ``keys``; rows handled, by table."""
    handled = dict.fromkeys(keys, 0)
    for rule in dataset.tables:
        values: dict[str, Any] = {**rule.anonymise, **dict.fromkeys(rule.detached())}
        if values:  # steps 1 and 2: anonymise kept rows, detach every subject row
            update = sa.update(tables[rule.table]).values(values)
            count = _by_key(conn, update, tables[rule.table], rule, keys[rule.table], batch_size)
            handled[rule.table] = count if rule.erase == "anonymise" else 0
    for rule, ref in dataset.releases():  # step 3
        table = tables[rule.table]
        release = sa.update(table).where(table.c[ref.column].in_(_KEYS)).values({ref.column: None})
        for chunk in chunks(keys[ref.table], batch_size):
            conn.execute(release, {"keys": chunk})
    for rule in dataset.deletion_order():  # step 4
        delete = sa.delete(tables[rule.table])
        handled[rule.table] = _by_key(conn, delete, tables[rule.table], rule, keys[rule.table], batch_size)
    return handled


def update_keys(
    conn: sa.Connection,
    dataset: Dataset,
    tables: Mapping[str, sa.Table],
    keys: Keys,
    values: Mapping[str, Mapping[str, Any]],
    batch_size: int,
) -> dict[str, int]:
    """Set ``values[table]`` in the rows in ``keys`` not holding them yet, in dataset order; rows changed."""
    changed = dict.fromkeys(keys, 0)
    for rule in dataset.tables:
        wanted, table = dict(values.get(rule.table) or {}), tables[rule.table]
        if wanted:
            stale = _differing(conn, rule, table, keys[rule.table], wanted, batch_size)
            update = sa.update(table).values(wanted)
            changed[rule.table] = _by_key(conn, update, table, rule, stale, batch_size)
    return changed


def _differing(
    conn: sa.Connection,
    rule: TableRule,
    table: sa.Table,
    keys: set[Key],
    wanted: Mapping[str, Any],
    batch_size: int,
) -> set[Key]:
    """The keys whose row holds something other than ``wanted`` in one of its columns.

    ``==`` in Python: MariaDB's ``TINYINT(1)`` 1 equals ``True``; a value the driver returns as
    another type (a date for a string) always differs, which costs a rewrite, never a miss.
    """
    key = table.c[rule.primary_key]
    query = sa.select(key, *(table.c[column] for column in wanted)).where(key.in_(_KEYS))
    stale: set[Key] = set()
    for chunk in chunks(keys, batch_size):
        for row in conn.execute(query, {"keys": chunk}):
            held = row._mapping
            if any(held[column] != value for column, value in wanted.items()):
                stale.add(held[rule.primary_key])
    return stale


def delete_keys(
    conn: sa.Connection,
    dataset: Dataset,
    tables: Mapping[str, sa.Table],
    keys: Keys,
    deleted: Iterable[str],
    batch_size: int,
) -> dict[str, int]:
    """Delete the rows in ``keys`` of the ``deleted`` tables (nothing references them); rows deleted."""
    handled = dict.fromkeys(keys, 0)
    for name in deleted:
        rule, table = dataset.rule(name), tables[name]
        handled[name] = _by_key(conn, sa.delete(table), table, rule, keys[name], batch_size)
    return handled


def _by_key(
    conn: sa.Connection,
    statement: sa.Update | sa.Delete,
    table: sa.Table,
    rule: TableRule,
    keys: set[Key],
    batch_size: int,
) -> int:
    """Run ``statement`` over ``keys``, one ``pk IN (:batch)`` chunk at a time; rows matched."""
    bounded = statement.where(table.c[rule.primary_key].in_(_KEYS))
    return sum(conn.execute(bounded, {"keys": chunk}).rowcount for chunk in chunks(keys, batch_size))


def chunks(keys: Iterable[Key], size: int) -> Iterator[list[Key]]:
    """``keys`` in sorted lists of at most ``size``."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


def _stream(
    conn: sa.Connection, query: sa.Select[Any], params: Mapping[str, Any], batch_size: int
) -> Iterator[Key]:
    """The first column of ``query``'s rows, fetched ``batch_size`` at a time."""
    result = conn.execute(query, dict(params), execution_options={"yield_per": batch_size})
    for partition in result.scalars().partitions():
        yield from partition


def _identifies(column: sa.Column[Any], attribute: str, subject: Subject) -> sa.ColumnElement[bool]:
    """``lower(column) = :email`` or ``column = :phone``."""
    value: str = getattr(subject, attribute)
    if attribute == "email":
        return sa.func.lower(column) == value.lower()
    return column == value

"""Engines, sessions, transient-error retries and migrations for the ledger (any SQLAlchemy URL).

SQLite needs two adjustments to be a correct ledger under concurrent tasks: foreign keys
switched on, and ``BEGIN IMMEDIATE`` so that two writers queue for the lock instead of one
of them failing with "database is locked" half-way through a read-then-write.

Server databases fail in passing: a pooled connection the server dropped (restart, idle
timeout, ``pg_terminate_backend``, ``KILL``), a serialization failure or deadlock that the
server resolved by aborting one transaction, a lock wait that timed out. The engine pings a
pooled connection before handing it out (``pool_pre_ping``) and recycles old ones, so a new
transaction never starts on a dead connection. A transaction that fails *in the middle* can
only be healed by running it again from the start: :func:`retrying` does that, after rollback,
with backoff and a bounded number of attempts, for the errors :func:`is_transient` names. The
body it re-runs should be idempotent against the ledger's state (check, then write), because a
connection lost during ``COMMIT`` leaves the outcome of that attempt unknown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DEFAULT_RETRY",
    "MIGRATIONS_DIR",
    "LedgerUnavailable",
    "RetryPolicy",
    "describe",
    "is_transient",
    "make_engine",
    "migrate",
    "retrying",
]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
POOL_RECYCLE_S = 1800  # below the usual server and firewall idle timeouts

T = TypeVar("T")

# PostgreSQL SQLSTATEs: serialization failure, deadlock; shutdown and "starting up" of the server.
_PG_TRANSIENT = {"40001", "40P01", "57P01", "57P02", "57P03"}
_PG_TRANSIENT_CLASSES = ("08",)  # connection exceptions
# MariaDB/MySQL error numbers: deadlock, lock wait timeout, connection killed, can't connect,
# server gone away, lost connection, interaction timeout, server shutdown, query interrupted.
_MYSQL_TRANSIENT = {1213, 1205, 1927, 2003, 2006, 2013, 4031, 1053, 1317}
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database is busy")


class LedgerUnavailable(SQLAlchemyError):
    """A transient database error outlasted every retry; the message holds no SQL and no data."""


class RetryPolicy:
    """How often and how patiently :func:`retrying` re-runs a transaction."""

    def __init__(self, attempts: int = 5, base_delay_s: float = 0.05, max_delay_s: float = 2.0) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts, self.base_delay_s, self.max_delay_s = attempts, base_delay_s, max_delay_s

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter after failed attempt number ``attempt``."""
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


DEFAULT_RETRY = RetryPolicy()


def _code(exc: DBAPIError) -> str | int | None:
    """The server's error code: a SQLSTATE (PostgreSQL) or an error number (MariaDB/MySQL)."""
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]  # MariaDB/MySQL: the error number (its SQLSTATE is often just HY000)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate if isinstance(sqlstate, str) else None


def is_transient(exc: BaseException) -> bool:
    """Whether running the failed transaction again may succeed (not: integrity, syntax, data errors)."""
    if isinstance(exc, DisconnectionError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True  # SQLAlchemy saw a disconnect; the pool drops the connection
    code = _code(exc)
    if isinstance(code, str):
        return code in _PG_TRANSIENT or code.startswith(_PG_TRANSIENT_CLASSES)
    if isinstance(code, int):
        return code in _MYSQL_TRANSIENT
    message = str(exc.orig).casefold()
    return isinstance(exc.orig, Exception) and any(m in message for m in _SQLITE_TRANSIENT)


def describe(exc: BaseException) -> str:
    """A PII-free line for an error: its class and the server's code, never the SQL or parameters."""
    if isinstance(exc, DBAPIError):
        code = _code(exc)
        suffix = f" ({code})" if code is not None else " (disconnected)" if exc.connection_invalidated else ""
        return f"{type(exc).__name__}: {type(exc.orig).__name__}{suffix}"
    return type(exc).__name__


def retrying(
    sessions: sessionmaker[Session],
    fn: Callable[[Session], T],
    *,
    policy: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``fn`` in a transaction of its own; re-run it whole, after rollback, on a transient error.

    Other errors (an IntegrityError, a programming error, whatever ``fn`` raises) propagate
    unchanged at once. When every attempt failed transiently, :class:`LedgerUnavailable` is raised
    with a PII-free message and without the original chained (its text would carry the SQL).
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            with sessions.begin() as session:
                return fn(session)
        except SQLAlchemyError as exc:
            if not is_transient(exc):
                raise
            reason = describe(exc)
        log.warning("ledger: transient error (%s), attempt %d of %d", reason, attempt, policy.attempts)
        if attempt < policy.attempts:
            sleep(policy.delay(attempt))
    raise LedgerUnavailable(f"the ledger failed {policy.attempts} times in a row; last: {reason}")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder created and safe pragmas."""
    parsed = make_url(url)
    # Server databases: a pooled connection is pinged before use, and replaced after POOL_RECYCLE_S.
    if parsed.get_backend_name() == "mysql":  # MariaDB too: same isolation semantics as PostgreSQL
        return create_engine(
            url, pool_pre_ping=True, pool_recycle=POOL_RECYCLE_S, isolation_level="READ COMMITTED"
        )
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_recycle=POOL_RECYCLE_S)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let the "begin" hook issue BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Bring the ledger schema to the newest migration."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

"""The ledger heals transient database failures: dead connections, deadlocks, serialization
failures, a locked SQLite file. Real PostgreSQL, MariaDB and SQLite; the faults are real too.

The ledger's own connections are killed (``pg_terminate_backend`` / ``KILL``) by the ids they
report when they connect, never every connection of the shared test server.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from dsar.ledger import Ledger, LedgerUnavailable, RetryPolicy
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, lock_request
from dsar.ledger.database import is_transient
from dsar.ledger.models import Event, Request, RequestType, Suppression
from tests.databases import MARIADB_URL, POSTGRES_URL
from tests.test_ledger import KARI, register

QUICK = RetryPolicy(attempts=6, base_delay_s=0.02, max_delay_s=0.2)
PII = ("kari.nordmann@example.no", "Kari Nordmann", "+4791234567")


def backend(ledger: Ledger) -> str:
    return ledger.engine.dialect.name  # sqlite | postgresql | mysql (MariaDB)


def server_only(ledger: Ledger) -> None:
    if backend(ledger) == "sqlite":
        pytest.skip("SQLite has no server connection to kill")


class Killer:
    """Records the server-side id of every connection the ledger opens, and kills them on demand."""

    def __init__(self, ledger: Ledger) -> None:
        self.ids: list[int] = []
        self._mysql = backend(ledger) == "mysql"
        self._admin = sa.create_engine(MARIADB_URL if self._mysql else POSTGRES_URL, poolclass=sa.NullPool)
        event.listen(ledger.engine, "connect", self._remember)
        ledger.engine.dispose()  # connections opened before the listener are not ours to know

    def _remember(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT CONNECTION_ID()" if self._mysql else "SELECT pg_backend_pid()")
        self.ids.append(int(cursor.fetchone()[0]))
        cursor.close()
        if not self._mysql:
            dbapi_connection.commit()  # psycopg opened a transaction for the query

    def kill_all(self) -> None:
        with self._admin.connect() as conn:
            for connection_id in self.ids:
                if self._mysql:
                    with contextlib.suppress(OperationalError):  # gone already
                        conn.exec_driver_sql(f"KILL {connection_id}")
                else:
                    conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": connection_id})
        time.sleep(0.2)  # the server closes the sockets asynchronously

    def close(self) -> None:
        self._admin.dispose()


@pytest.fixture
def killer(ledger: Ledger) -> Iterator[Killer]:
    server_only(ledger)
    k = Killer(ledger)
    yield k
    k.close()


def count(ledger: Ledger, request_id: str, kind: str) -> int:
    with ledger.session() as session:
        query = (
            select(func.count()).select_from(Event).where(Event.request_id == request_id, Event.kind == kind)
        )
        return int(session.scalar(query) or 0)


# ---- dead connections --------------------------------------------------------------------------------


def test_a_killed_pooled_connection_is_replaced_before_the_next_session(
    ledger: Ledger, killer: Killer
) -> None:
    request_id = register(ledger)
    assert len(killer.ids) == 1
    killer.kill_all()
    with ledger.session() as session:  # pre-ping finds the pooled connection dead and opens another
        append_event(session, request_id=request_id, kind="step.done")
    assert len(killer.ids) == 2
    assert count(ledger, request_id, "step.done") == 1


def test_a_transaction_interrupted_by_a_kill_runs_again_and_records_once(
    ledger: Ledger, killer: Killer
) -> None:
    request_id = register(ledger)
    runs = []

    def step(session: Session) -> str:
        runs.append(1)
        append_event(session, request_id=request_id, kind="step.done", data={"run": len(runs)})
        if len(runs) == 1:
            killer.kill_all()  # the server drops the connection in the middle of the transaction
        session.execute(select(Request.id).where(Request.id == request_id))
        return "done"

    assert ledger.transaction(step, policy=QUICK) == "done"
    assert len(runs) == 2
    assert count(ledger, request_id, "step.done") == 1


# ---- deadlocks and serialization failures -------------------------------------------------------------


def both_at_once(first: Callable[[], Any], second: Callable[[], Any]) -> list[Any]:
    """Run both in threads; return their results (or what they raised)."""
    results: list[Any] = [None, None]

    def run(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_a_deadlock_between_two_transactions_is_retried_and_both_succeed(ledger: Ledger) -> None:
    server_only(ledger)
    a = register(ledger)
    b = register(ledger, KARI.__class__(email="ola@example.no", phone=None, name=None))
    meet = threading.Barrier(2, timeout=20)
    runs: list[str] = []

    def crossing(mine: str, theirs: str) -> Callable[[], str]:
        def step(session: Session) -> str:
            runs.append(mine)
            lock_request(session, mine)
            if runs.count(mine) == 1:
                meet.wait()  # both hold their first lock: each now waits for the other's
            lock_request(session, theirs)
            append_event(session, request_id=mine, kind="crossed")
            append_event(session, request_id=theirs, kind="crossed")
            return mine

        return lambda: ledger.transaction(step, policy=QUICK)

    assert both_at_once(crossing(a, b), crossing(b, a)) == [a, b]
    assert len(runs) == 3  # the deadlock's victim ran once more
    assert count(ledger, a, "crossed") == count(ledger, b, "crossed") == 2


def test_a_serialization_failure_is_retried_and_both_succeed(ledger: Ledger) -> None:
    if backend(ledger) != "postgresql":
        pytest.skip("SQLSTATE 40001 under REPEATABLE READ is PostgreSQL's")
    request_id = register(ledger)
    meet = threading.Barrier(2, timeout=20)
    runs: list[int] = []

    def step(n: int) -> Callable[[], int]:
        def body(session: Session) -> int:
            runs.append(n)
            session.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            request = session.get_one(Request, request_id)  # the snapshot is taken here
            if runs.count(n) == 1:
                meet.wait()
            request.language = ("en", "sv")[n]  # both update the row read in the old snapshot
            session.flush()
            return n

        return lambda: ledger.transaction(body, policy=QUICK)

    assert both_at_once(step(0), step(1)) == [0, 1]
    assert len(runs) == 3


def test_a_locked_sqlite_file_is_waited_out(ledger: Ledger, tmp_path: Any) -> None:
    if backend(ledger) != "sqlite":
        pytest.skip("SQLite's lock")
    request_id = register(ledger)
    event.listen(ledger.engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout=0"))
    ledger.engine.dispose()  # from now on a busy file fails at once with "database is locked"
    other = sqlite3.connect(ledger.engine.url.database or "", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    threading.Timer(0.3, other.rollback).start()
    runs = []

    def step(session: Session) -> None:
        runs.append(1)
        append_event(session, request_id=request_id, kind="step.done")

    ledger.transaction(step, policy=RetryPolicy(attempts=20, base_delay_s=0.05, max_delay_s=0.2))
    other.close()
    assert len(runs) >= 2
    assert count(ledger, request_id, "step.done") == 1


# ---- what is not retried, and when retrying ends -----------------------------------------------------


def test_an_integrity_error_is_not_retried(ledger: Ledger) -> None:
    runs = []

    def step(session: Session) -> None:
        runs.append(1)
        for _ in range(2):
            session.add(Suppression(key="email:x", reason="objection", created_at=datetime.now(UTC)))
            session.flush()

    with pytest.raises(IntegrityError):
        ledger.transaction(step, policy=QUICK)
    assert len(runs) == 1
    with ledger.session() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_retries_are_bounded_and_the_final_error_is_pii_free(ledger: Ledger) -> None:
    class Deadlock(Exception):
        sqlstate = "40P01"

    runs = []

    def step(session: Session) -> None:
        runs.append(1)
        session.execute(select(Request.id))
        raise OperationalError(
            "UPDATE requests SET name = %(name)s", {"name": PII[1]}, Deadlock(f"deadlock over {PII[0]}")
        )

    with pytest.raises(LedgerUnavailable) as raised:
        ledger.transaction(step, policy=RetryPolicy(attempts=3, base_delay_s=0.001))
    assert len(runs) == 3
    message = str(raised.value)
    assert "3 times" in message
    assert "40P01" in message
    assert not [v for v in PII if v in message]
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None


def test_what_counts_as_transient() -> None:
    def error(orig: Exception, *, invalidated: bool = False) -> OperationalError:
        return OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)

    class Pg(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__("x")
            self.sqlstate = sqlstate

    assert is_transient(error(Pg("40001")))
    assert is_transient(error(Pg("40P01")))
    assert is_transient(error(Pg("57P01")))  # admin shutdown: the server restarts
    assert is_transient(error(Pg("08006")))
    assert not is_transient(error(Pg("23505")))  # unique violation
    assert not is_transient(error(Pg("42P01")))  # undefined table
    assert is_transient(error(Exception(1213, "Deadlock found")))
    assert is_transient(error(Exception(1205, "Lock wait timeout exceeded")))
    assert is_transient(error(Exception(2013, "Lost connection")))
    assert not is_transient(error(Exception(1062, "Duplicate entry")))
    assert is_transient(error(sqlite3.OperationalError("database is locked")))
    assert not is_transient(error(sqlite3.OperationalError("no such table: x")))
    assert is_transient(error(Exception("server closed the connection"), invalidated=True))
    assert not is_transient(ValueError("x"))


def test_the_repository_works_inside_a_transaction(ledger: Ledger) -> None:
    """Ledger.transaction returns what the body returns, usable after the commit."""
    request = ledger.transaction(
        lambda session: repo.register_request(
            session,
            keys=ledger.keys,
            request_type=RequestType.ACCESS,
            subject=KARI,
            received_at=datetime.now(UTC),
        )
    )
    assert request.id.startswith("dsar-")
    assert count(ledger, request.id, "request.registered") == 1

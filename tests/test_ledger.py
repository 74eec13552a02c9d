"""The ledger on SQLite, PostgreSQL and MariaDB: requests, encryption at rest, duplicates, the event chain."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, verify_chain
from dsar.ledger.models import Event, Request, RequestStatus, RequestType
from integrations.base import Subject

OSLO = ZoneInfo("Europe/Oslo")
KARI = Subject(email="kari.nordmann@example.no", phone="+4791234567", name="Kari Nordmann")


def register(ledger: Ledger, subject: Subject = KARI, kind: RequestType = RequestType.ACCESS) -> str:
    with ledger.session() as session:
        request = repo.register_request(
            session,
            keys=ledger.keys,
            request_type=kind,
            subject=subject,
            received_at=datetime(2025, 1, 31, 23, 30, tzinfo=OSLO),
            ticket_ref="ZD-1",
        )
        return request.id


def test_request_gets_its_oslo_receipt_day_and_statutory_due_date(ledger: Ledger) -> None:
    request_id = register(ledger)
    with ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.received_date == date(2025, 1, 31)
        assert request.due_date == date(2025, 2, 28)
        assert request.status is RequestStatus.RECEIVED
        assert repo.load_subject(session, keys=ledger.keys, request_id=request_id) == KARI


def test_identifiers_are_encrypted_at_rest(ledger: Ledger) -> None:
    request_id = register(ledger)
    with ledger.engine.connect() as conn:
        raw = conn.execute(select(Request.__table__).where(Request.id == request_id)).one()._asdict()
        events = conn.execute(text("SELECT data FROM events")).scalars().all()
    dumped = repr(raw) + repr(events)
    for value in ("kari.nordmann", "91234567", "Nordmann"):
        assert value not in dumped
    assert raw["email_hash"]
    assert len(raw["email_hash"]) == 64


def test_identical_open_request_is_refused_but_other_types_and_people_are_not(ledger: Ledger) -> None:
    first = register(ledger)
    with pytest.raises(repo.DuplicateRequest) as caught:
        register(ledger, Subject(email="kari.nordmann@example.no"))
    assert caught.value.existing_id == first
    register(ledger, kind=RequestType.ERASURE)
    register(ledger, Subject(email="ola.nordmann@example.no"))
    with ledger.session() as session:
        repo.set_status(session, request=repo.get_request(session, first), status=RequestStatus.COMPLETED)
    register(ledger)  # the earlier one is closed: a new request is welcome


def test_every_change_is_an_event_and_the_chain_verifies(ledger: Ledger) -> None:
    request_id = register(ledger)
    with ledger.session() as session:
        repo.set_status(
            session, request=repo.get_request(session, request_id), status=RequestStatus.IN_PROGRESS
        )
        append_event(session, request_id=request_id, kind="system.collected", data={"system": "crm", "n": 3})
    with ledger.session() as session:
        check = verify_chain(session, request_id)
        kinds = session.scalars(
            select(Event.kind).where(Event.request_id == request_id).order_by(Event.seq)
        ).all()
    assert check.ok
    assert check.events == 3
    assert kinds == ["request.registered", "request.status", "system.collected"]


def test_the_database_refuses_to_edit_or_delete_events(ledger: Ledger) -> None:
    register(ledger)
    for statement in ("UPDATE events SET kind = 'forged'", "DELETE FROM events"):
        with pytest.raises(DBAPIError, match="append-only"), ledger.engine.begin() as conn:
            conn.execute(text(statement))


def test_the_chain_detects_an_edited_event(ledger: Ledger) -> None:
    request_id = register(ledger)
    with ledger.session() as session:
        for n in range(3):
            append_event(session, request_id=request_id, kind="step", data={"n": n})
    _bypass_append_only_and_edit(ledger, request_id, seq=2)
    with ledger.session() as session:
        check = verify_chain(session, request_id)
    assert not check.ok
    assert check.broken_at == 2


def _bypass_append_only_and_edit(ledger: Ledger, request_id: str, seq: int) -> None:
    """What a privileged hand could do: drop the guard, rewrite history."""
    forged = "UPDATE events SET data = '{\"n\": 99}' WHERE request_id = :r AND seq = :s"
    with ledger.engine.begin() as conn:
        if conn.dialect.name in ("sqlite", "mysql", "mariadb"):
            conn.execute(text("DROP TRIGGER events_no_update"))
        else:
            conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))
        conn.execute(text(forged), {"r": request_id, "s": seq})


def test_concurrent_writers_keep_one_unbroken_chain(ledger: Ledger) -> None:
    request_id = register(ledger)

    def write(n: int) -> None:
        with ledger.session() as session:
            append_event(session, request_id=request_id, kind="parallel", data={"n": n})

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(40)))
    with ledger.session() as session:
        check = verify_chain(session, request_id)
    assert check.ok
    assert check.events == 41


def test_suspensions_extend_the_effective_due_date(ledger: Ledger) -> None:
    from dsar.ledger.models import Suspension

    request_id = register(ledger)
    with ledger.session() as session:
        session.add(
            Suspension(
                request_id=request_id,
                started_on=date(2025, 2, 3),
                ended_on=date(2025, 2, 6),
                reason="identity information requested",
            )
        )
    with ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert repo.suspended_days(request, date(2025, 3, 1)) == 3
        assert repo.effective_due_date(request, date(2025, 3, 1)) == date(
            2025, 3, 3
        )  # 28 Feb + 3 = 3 Mar (Mon)


def test_migrations_go_down_and_up_again(ledger: Ledger) -> None:
    from alembic import command
    from alembic.config import Config

    from dsar.ledger.database import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with ledger.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
        command.upgrade(config, "head")
    register(ledger)  # the schema works after the round trip


def test_identical_requests_registered_at_the_same_moment_become_one(ledger: Ledger) -> None:
    barrier = threading.Barrier(6)

    def attempt(_: int) -> str:
        barrier.wait()  # all check for a duplicate at the same moment, then insert
        try:
            return register(ledger)
        except repo.DuplicateRequest as duplicate:
            return f"duplicate of {duplicate.existing_id}"

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    winners = [o for o in outcomes if not o.startswith("duplicate")]
    assert len(winners) == 1
    assert outcomes.count(f"duplicate of {winners[0]}") == 5
    with ledger.session() as session:
        assert session.query(Request).count() == 1

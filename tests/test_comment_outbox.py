"""The ticket comment outbox: a Zendesk outage delays the intake's note but never loses or doubles it.

Real ledgers (SQLite, PostgreSQL, MariaDB), the Zendesk emulator over HTTP, the intake app.
"""

from __future__ import annotations

import socket
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from starlette.exceptions import StarletteDeprecationWarning

from dsar import comments
from dsar.intake_api import create_intake_app
from dsar.ledger import Ledger
from dsar.ledger.models import MailStatus, OutboxComment
from dsar.outbox import Delivery
from dsar.runtime import Runtime
from emulators.server import RunningServer, serve_in_thread
from emulators.zendesk import ZendeskState, create_app
from integrations.http import HttpPolicy
from integrations.ticketing import ZendeskTickets
from tests.conftest import make_settings
from tests.test_intake_api import PII, SECRET, Starts, events, send, ticket_id, webhook

with warnings.catch_warnings():  # as in tests/test_intake_api.py
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

POLICY = HttpPolicy(max_attempts=1, timeout_s=5)


@pytest.fixture(scope="module")
def zendesk() -> Iterator[tuple[RunningServer, ZendeskState]]:
    state = ZendeskState()
    with serve_in_thread(create_app(state)) as server:
        yield server, state


@pytest.fixture
def desk(zendesk: tuple[RunningServer, ZendeskState]) -> ZendeskState:
    state = zendesk[1]
    state.reset()
    state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Be om innsyn")])
    return state


def tickets_at(url: str, state: ZendeskState) -> ZendeskTickets:
    return ZendeskTickets(url, state.agent_email, state.api_token, POLICY)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed when the block ends: nobody listens


@pytest.fixture
def tickets(zendesk: tuple[RunningServer, ZendeskState], desk: ZendeskState) -> Iterator[ZendeskTickets]:
    client = tickets_at(zendesk[0].url, desk)
    yield client
    client.close()


def intake(ledger: Ledger, tmp_path: Path, commenter: comments.Commenter) -> TestClient:
    settings = make_settings(tmp_path, intake_zendesk_secret=SECRET)
    return TestClient(create_intake_app(ledger, settings, start=Starts(), comment=commenter))


def notes(state: ZendeskState) -> list[dict[str, Any]]:
    """The internal notes on the webhook's ticket (its description is public)."""
    return [c for c in state.comments[int(ticket_id(state))] if not c["public"]]


def outbox(ledger: Ledger) -> list[tuple[MailStatus, int]]:
    with ledger.session() as session:
        rows = session.scalars(select(OutboxComment).order_by(OutboxComment.id))
        return [(row.status, row.attempts) for row in rows]


def kinds(ledger: Ledger, request_id: str) -> list[str]:
    return [kind for kind, _ in events(ledger, request_id)]


def test_zendesk_down_at_intake_the_note_waits_and_is_delivered_once_after(
    ledger: Ledger, tmp_path: Path, desk: ZendeskState, tickets: ZendeskTickets
) -> None:
    desk.faults.server_error_next = -1  # every call answers 5xx
    with intake(ledger, tmp_path, tickets.comment) as client:
        response = send(client, webhook(ticket_id(desk)))
    assert response.status_code == 201  # registered and started all the same
    request_id = response.json()["request_id"]
    assert notes(desk) == []
    assert outbox(ledger) == [(MailStatus.PENDING, 1)]
    failed = dict(events(ledger, request_id))["ticket.comment_failed"]
    assert failed == {
        "ticket": f"zendesk:{ticket_id(desk)}",
        "note": "intake.note",
        "error": "RetryableError",
        "retry": True,
        "attempts": 1,
    }
    with ledger.session() as session:  # stored encrypted, with a PII-free error
        row = session.scalars(select(OutboxComment)).one()
        assert request_id.encode() not in row.body_ciphertext
        assert row.error
        assert not [v for v in PII if v.casefold() in row.error.casefold()]

    desk.faults.server_error_next = 0  # Zendesk recovers
    assert comments.deliver_comments(ledger, tickets.comment) == Delivery(sent=1, failed=0)
    assert comments.deliver_comments(ledger, tickets.comment) == Delivery(sent=0, failed=0)
    assert len(notes(desk)) == 1
    assert request_id in notes(desk)[0]["body"]
    assert outbox(ledger) == [(MailStatus.SENT, 2)]
    assert kinds(ledger, request_id) == ["request.registered", "ticket.comment_failed", "ticket.commented"]


def test_zendesk_unreachable_at_intake_then_the_deadline_watchs_delivery_takes_the_note(
    ledger: Ledger, tmp_path: Path, desk: ZendeskState, zendesk: tuple[RunningServer, ZendeskState]
) -> None:
    nowhere = tickets_at(f"http://127.0.0.1:{closed_port()}", desk)
    with intake(ledger, tmp_path, nowhere.comment) as client:
        request_id = send(client, webhook(ticket_id(desk))).json()["request_id"]
    nowhere.close()
    assert outbox(ledger) == [(MailStatus.PENDING, 1)]
    settings = make_settings(
        tmp_path,
        ticketing_zendesk_url=zendesk[0].url,
        ticketing_zendesk_email=desk.agent_email,
        ticketing_zendesk_token=desk.api_token,
    )
    rt = Runtime(settings=settings, ledger=ledger, specs=())
    assert comments.deliver_pending(rt) == Delivery(sent=1, failed=0)  # what the deadline watch runs
    assert comments.deliver_pending(rt) == Delivery(sent=0, failed=0)
    assert len(notes(desk)) == 1
    assert kinds(ledger, request_id).count("ticket.commented") == 1
    unconfigured = Runtime(settings=make_settings(tmp_path), ledger=ledger, specs=())
    assert comments.deliver_pending(unconfigured) == Delivery(sent=0, failed=0)


def test_the_same_webhook_three_times_during_an_outage_is_one_note(
    ledger: Ledger, tmp_path: Path, desk: ZendeskState, tickets: ZendeskTickets
) -> None:
    desk.faults.server_error_next = -1
    with intake(ledger, tmp_path, tickets.comment) as client:
        answers = [send(client, webhook(ticket_id(desk))) for _ in range(3)]
        assert [a.status_code for a in answers] == [201, 200, 200]
        assert outbox(ledger) == [(MailStatus.PENDING, 3)]  # one note; each repeat tried it again
        desk.faults.server_error_next = 0
        assert send(client, webhook(ticket_id(desk))).status_code == 200  # a fourth one delivers it
        send(client, webhook(ticket_id(desk)))
    assert len(notes(desk)) == 1
    assert outbox(ledger) == [(MailStatus.SENT, 4)]
    assert comments.deliver_comments(ledger, tickets.comment) == Delivery(sent=0, failed=0)
    assert len(notes(desk)) == 1


def test_concurrent_deliverers_send_each_note_once(
    ledger: Ledger, desk: ZendeskState, tickets: ZendeskTickets
) -> None:
    ref = f"zendesk:{ticket_id(desk)}"
    for n in range(6):
        assert comments.enqueue_comment(
            ledger, key=f"k{n}", request_id=None, ticket_ref=ref, kind="t", body=f"n{n}"
        )
        assert not comments.enqueue_comment(
            ledger, key=f"k{n}", request_id=None, ticket_ref=ref, kind="t", body="again"
        )
    desk.faults.latency_ms = 50  # long enough for the deliverers to overlap
    barrier = threading.Barrier(3)
    results: list[Delivery] = []

    def deliver() -> None:
        barrier.wait()
        results.append(comments.deliver_comments(ledger, tickets.comment))

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(note["body"] for note in notes(desk)) == [f"n{n}" for n in range(6)]
    assert sum(r.sent for r in results) == 6
    assert sum(r.failed for r in results) == 0
    assert outbox(ledger) == [(MailStatus.SENT, 1)] * 6


def test_an_abandoned_claim_is_taken_over_and_a_live_one_is_left_alone(
    ledger: Ledger, desk: ZendeskState, tickets: ZendeskTickets
) -> None:
    ref = f"zendesk:{ticket_id(desk)}"
    for key in ("live", "dead"):
        comments.enqueue_comment(ledger, key=key, request_id=None, ticket_ref=ref, kind="t", body=key)
    now = datetime.now(UTC)
    with ledger.session() as session:
        for key, at in (("live", now), ("dead", now - comments.CLAIM_TIMEOUT - timedelta(minutes=1))):
            claim = update(OutboxComment).where(OutboxComment.key == key)
            session.execute(claim.values(status=MailStatus.SENDING, claimed_at=at))
    assert comments.deliver_comments(ledger, tickets.comment) == Delivery(sent=1, failed=0)
    assert [note["body"] for note in notes(desk)] == ["dead"]


def test_a_commenter_that_raises_anything_keeps_the_note(ledger: Ledger, desk: ZendeskState) -> None:
    ref = f"zendesk:{ticket_id(desk)}"
    comments.enqueue_comment(ledger, key="k", request_id=None, ticket_ref=ref, kind="t", body="b")

    def broken(ticket: str, body: str) -> None:
        raise httpx.ConnectError("refused")

    assert comments.deliver_comments(ledger, broken) == Delivery(sent=0, failed=1)
    assert outbox(ledger) == [(MailStatus.PENDING, 1)]
    sent: list[tuple[str, str]] = []
    assert comments.deliver_comments(ledger, lambda t, b: sent.append((t, b))) == Delivery(sent=1, failed=0)
    assert sent == [(ticket_id(desk), "b")]

"""Issue 7, end to end: a signed Zendesk webhook becomes a completed access request whose PDF
goes back to the ticket.

Everything is real but Zendesk and the CRM: the intake app (driven by Starlette's TestClient),
the access flow under Prefect, HubSpot and the application database as emulators over HTTP and
SQL, the ledger on SQLite, and the Zendesk emulator over HTTP for the notes and the upload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pypdf
import pytest
from prefect import flow
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from dsar import runtime
from dsar.deployments import zendesk_commenter
from dsar.export import read_export
from dsar.intake_api import create_intake_app
from dsar.ledger import repository as repo
from dsar.ledger.models import Event, RequestStatus, SystemResult
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.operator import Operator
from emulators.server import RunningServer, serve_in_thread
from emulators.stack import EmulatorStack, emulator_stack
from emulators.zendesk import ZendeskState, create_app
from flows.access import access_request
from tasks.ticketing import attach_report_to_ticket
from tests.conformance import SpecCheckingTransport
from tests.conftest import make_settings
from tests.identity_helpers import confirm_identity

with warnings.catch_warnings():  # as in test_intake_api: Starlette's TestClient works with httpx
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

SECRET = "zd-webhook-signing-secret"
PII = (DEMO_SUBJECT.email, DEMO_SUBJECT.phone, "+4791234567", "91234567", "912 34 567")


SEND = {"decision": "send", "operator": "Ingrid Operatør", "redactions": [], "note": "checked"}


@pytest.fixture(autouse=True)
def reviewer() -> Iterator[Operator]:
    """The operator who reviews each report before it goes to the ticket: ``plan`` first, then send."""
    plan: list[Callable[[], dict[str, object]]] = []

    def answer(key: str) -> dict[str, object]:
        return plan.pop(0)() if plan else SEND

    with Operator(answer, poll_s=0.3) as operator:
        operator.plan = plan  # type: ignore[attr-defined]
        yield operator


@pytest.fixture
def zendesk() -> Iterator[tuple[RunningServer, ZendeskState]]:
    state = ZendeskState()
    with serve_in_thread(create_app(state)) as server:
        yield server, state


@pytest.fixture
def rt(tmp_path: Path, zendesk: tuple[RunningServer, ZendeskState]) -> Iterator[Runtime]:
    server, state = zendesk
    with emulator_stack(tmp_path / "systems", only=("hubspot-crm", "app-db")) as stack:
        runtime = Runtime.from_settings(settings_for(tmp_path, stack, server.url, state))
        runtime.transports = {"zendesk-tickets": spec_checked(server.url)}
        with using(runtime):
            yield runtime
        runtime.close()


def settings_for(tmp_path: Path, stack: EmulatorStack, url: str, state: ZendeskState) -> Any:
    return make_settings(
        tmp_path,
        systems_file=stack.systems_file,
        task_retries=0,
        http_backoff_base_s=0.01,
        http_max_attempts=2,
        smtp_port=stack.mailbox.port,
        intake_zendesk_secret=SECRET,
        ticketing_zendesk_url=url,
        ticketing_zendesk_email=state.agent_email,
        ticketing_zendesk_token=state.api_token,
    )


def spec_checked(url: str) -> SpecCheckingTransport:
    """The ticket update checked against Zendesk's spec; no stored spec describes uploads."""
    return SpecCheckingTransport(httpx.HTTPTransport(), url, "zd_tickets.yml", uncovered=("/api/v2/uploads",))


def run_inline(request_id: str, request_type: str) -> None:
    """The intake's starter, as a deployment's worker would run it (here, in the request)."""
    assert request_type == "access"
    confirm_identity(runtime.current().ledger, request_id)  # checked in the ticket by an operator
    access_request(request_id)


@flow
def reattach(request_id: str) -> bool:
    """The attach task again, as a re-run of the flow would call it."""
    return attach_report_to_ticket(request_id)


def signed_webhook(ticket: int) -> tuple[bytes, dict[str, str]]:
    """Kari's access request from ``ticket``, signed as Zendesk signs it."""
    who = {"email": DEMO_SUBJECT.email, "phone": DEMO_SUBJECT.phone, "name": DEMO_SUBJECT.name}
    raw = json.dumps({"ticket_id": str(ticket), "request_type": "access", "language": "nb", "requester": who})
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(SECRET.encode(), stamp.encode() + raw.encode(), hashlib.sha256).digest()
    headers = {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature-Timestamp": stamp}
    return raw.encode(), headers | {"X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode()}


def event_kinds(rt: Runtime, request_id: str) -> list[str]:
    with rt.ledger.session() as session:
        query = select(Event.kind).where(Event.request_id == request_id).order_by(Event.seq)
        return list(session.scalars(query))


def test_signed_webhook_ends_with_the_report_on_the_ticket(
    rt: Runtime, zendesk: tuple[RunningServer, ZendeskState], reviewer: Operator
) -> None:
    state = zendesk[1]
    ticket = state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Kunden ber om innsyn")])
    app = create_intake_app(rt.ledger, rt.settings, start=run_inline, comment=zendesk_commenter(rt.settings))
    raw, headers = signed_webhook(ticket)
    with TestClient(app) as client:
        response = client.post("/intake/zendesk", content=raw, headers=headers)

    assert response.status_code == 201, response.text  # 202 would mean the flow failed
    assert reviewer.answered == ["review-0"]  # an operator looked before anything was sent
    request_id, due = response.json()["request_id"], date.fromisoformat(response.json()["due_date"])
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED
    assert {"ticket.report_attached", "ticket.commented"} <= set(event_kinds(rt, request_id))

    notes = [c for c in state.comments[ticket] if c["author_id"] == state.agent_id and not c["public"]]
    registered = [n for n in notes if request_id in n["body"] and due.strftime("%d.%m.%Y") in n["body"]]
    assert registered  # (a) the receipt: request id and due date
    attached = [n for n in notes if n["attachments"]]
    assert len(attached) == 1
    checks = rt.transports["zendesk-tickets"]
    assert isinstance(checks, SpecCheckingTransport)
    assert (checks.checked, checks.unchecked) == (1, 1)  # the PUT as Zendesk's spec has it; the upload
    assert request_id in attached[0]["body"]
    (attachment,) = attached[0]["attachments"]
    assert attachment["content_type"] == "application/pdf"
    pdf = state.attachment(attachment["id"])
    assert pdf.startswith(b"%PDF")
    assert attachment["size"] == len(pdf)
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert request_id in text
    assert "Storgata 12" in text
    bodies = "\n".join(n["body"] for n in notes).casefold()
    assert not [v for v in PII if v.casefold() in bodies]  # the notes' text holds no contact data


def test_attaching_again_is_a_no_op(rt: Runtime, zendesk: tuple[RunningServer, ZendeskState]) -> None:
    state = zendesk[1]
    ticket = state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Kunden ber om innsyn")])
    app = create_intake_app(rt.ledger, rt.settings, start=run_inline, comment=None)
    raw, headers = signed_webhook(ticket)
    with TestClient(app) as client:
        request_id = client.post("/intake/zendesk", content=raw, headers=headers).json()["request_id"]
    assert reattach(request_id) is True  # already there: nothing uploaded again
    assert sum(bool(c["attachments"]) for c in state.comments[ticket]) == 1
    assert event_kinds(rt, request_id).count("ticket.report_attached") == 1


def test_a_zendesk_outage_is_recorded_and_the_request_still_completes(
    rt: Runtime, zendesk: tuple[RunningServer, ZendeskState]
) -> None:
    state = zendesk[1]
    ticket = state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Kunden ber om innsyn")])
    app = create_intake_app(rt.ledger, rt.settings, start=run_inline, comment=None)
    raw, headers = signed_webhook(ticket)
    state.faults.server_error_next = -1  # every Zendesk call fails
    with TestClient(app) as client:
        response = client.post("/intake/zendesk", content=raw, headers=headers)
    assert response.status_code == 201, response.text
    request_id = response.json()["request_id"]
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED
        failed = session.scalars(select(Event).where(Event.kind == "ticket.attach_failed")).one()
        assert failed.data == {
            "ticket": f"zendesk:{ticket}",
            "kind": "access_report",
            "error": failed.data["error"],
        }
        assert failed.data["error"].startswith("zendesk-tickets: RetryableError HTTP 500")

    state.faults.server_error_next = 0  # Zendesk is back: a later run attaches it
    assert reattach(request_id) is True
    assert sum(bool(c["attachments"]) for c in state.comments[ticket]) == 1


def test_a_field_the_reviewer_redacts_is_gone_from_what_reaches_the_ticket(
    rt: Runtime, zendesk: tuple[RunningServer, ZendeskState], reviewer: Operator
) -> None:
    state = zendesk[1]
    ticket = state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Kunden ber om innsyn")])

    def redact_the_shipping_address() -> dict[str, object]:  # as the operator reads it in the report
        with rt.ledger.session() as session:
            row = session.scalars(select(SystemResult).where(SystemResult.system == "app-db")).one()
            records = rt.ledger.keys.cipher.decrypt_json(row.payload_ciphertext)
        marked = [
            f"app-db/{r['record_id']}/shipping_address" for r in records if "shipping_address" in r["fields"]
        ]
        assert marked
        return {"decision": "redact", "operator": "Ingrid Operatør", "redactions": marked, "note": "x"}

    reviewer.plan.append(redact_the_shipping_address)  # type: ignore[attr-defined]
    app = create_intake_app(rt.ledger, rt.settings, start=run_inline, comment=None)
    raw, headers = signed_webhook(ticket)
    with TestClient(app) as client:
        response = client.post("/intake/zendesk", content=raw, headers=headers)

    assert response.status_code == 201, response.text
    assert reviewer.answered == ["review-0", "review-1"]  # redacted, looked at again, sent
    (attached,) = [c for c in state.comments[ticket] if c["attachments"]]
    pdf = state.attachment(attached["attachments"][0]["id"])
    text = " ".join(" ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages).split())
    assert "Kari Nordmann, Storgata 12" not in text  # the orders' shipping address (a gift's recipient)
    assert "[sladdet: opplysninger om andre (GDPR art. 15 nr. 4)]" in text  # the marker in its place
    export = read_export(
        pypdf.PdfReader(io.BytesIO(pdf)).attachments[
            f"portability-export-{response.json()['request_id']}.zip"
        ][0]
    )
    orders = [r for records in export["app-db"].values() for r in records if r.category == "order"]
    assert orders
    assert all("shipping_address" not in r.fields for r in orders)


def test_a_held_answer_is_not_sent_and_the_request_stays_open(
    rt: Runtime, zendesk: tuple[RunningServer, ZendeskState], reviewer: Operator
) -> None:
    state = zendesk[1]
    ticket = state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Kunden ber om innsyn")])
    hold = {"decision": "hold", "operator": "Ingrid Operatør", "redactions": [], "note": "ask legal"}
    reviewer.plan.append(lambda: hold)  # type: ignore[attr-defined]
    app = create_intake_app(rt.ledger, rt.settings, start=run_inline, comment=None)
    raw, headers = signed_webhook(ticket)
    with TestClient(app) as client:
        request_id = client.post("/intake/zendesk", content=raw, headers=headers).json()["request_id"]

    assert not [c for c in state.comments[ticket] if c["attachments"]]  # nothing reached the ticket
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.AWAITING_OPERATOR, "report_held")
    access_request(request_id)  # re-run: reviewed again (sent this time), then completed
    assert reviewer.answered == ["review-0", "review-0"]
    assert sum(bool(c["attachments"]) for c in state.comments[ticket]) == 1
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED

"""The intake endpoint as Zendesk and other ticketing systems meet it: signed webhooks, a bearer
intake, one-line refusals that change nothing, and a comment back on the Zendesk ticket.

The ledger is real (SQLite and PostgreSQL); the Zendesk ticket lives in the emulator, over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from dsar.intake_api import create_intake_app
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.models import Event, Request
from emulators.server import RunningServer, serve_in_thread
from emulators.zendesk import ZendeskState, create_app
from integrations.errors import ConfigurationError, PermanentError
from integrations.http import HttpPolicy
from integrations.ticketing import ZendeskTickets
from tests.conformance import SpecCheckingTransport
from tests.conftest import make_settings
from tests.databases import make_database_url

with warnings.catch_warnings():  # Starlette 1 would rather drive its TestClient with httpx2; httpx works
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SECRET, TOKEN = "zd-webhook-signing-secret", "intake-bearer-token"
EMAIL, PHONE, NAME = "kari.nordmann@example.no", "+47 912 34 567", "Kari Nordmann"
PII = (EMAIL, PHONE, "+4791234567", "91234567", NAME)
LIMIT = 4096
GARBAGE = "not base64 at all ✓".encode()  # a header value that is not even ASCII


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """This module's ledgers: SQLite, and PostgreSQL as in production."""
    with make_database_url(request.param) as url:
        yield url


class Starts(list[tuple[str, str]]):
    """A recording flow starter; ``fail`` makes it raise, as an unreachable Prefect API would."""

    fail = False

    def __call__(self, request_id: str, request_type: str) -> None:
        self.append((request_id, request_type))
        if self.fail:
            raise ConnectionError("prefect api unreachable")


@pytest.fixture(scope="module")
def zendesk() -> Iterator[tuple[RunningServer, ZendeskState]]:
    state = ZendeskState()
    with serve_in_thread(create_app(state)) as server:
        yield server, state


@pytest.fixture
def desk(zendesk: tuple[RunningServer, ZendeskState]) -> ZendeskState:
    """The emulated Zendesk account, emptied, with the ticket the webhooks name."""
    state = zendesk[1]
    state.reset()
    state.add_ticket(state.agent_id, "Innsyn", [(state.agent_id, "Be om innsyn")])
    return state


@pytest.fixture
def starts() -> Starts:
    return Starts()


def make_app(
    ledger: Ledger, tmp_path: Path, starts: Starts, url: str, state: ZendeskState, **kw: Any
) -> Starlette:
    settings = make_settings(tmp_path, intake_max_body_bytes=LIMIT, **kw)
    policy = HttpPolicy(max_attempts=1, timeout_s=5)
    inner = httpx.HTTPTransport()
    transport = SpecCheckingTransport(inner, url, "zd_tickets.yml")  # what real Zendesk would accept
    tickets = ZendeskTickets(url, state.agent_email, state.api_token, policy, transport)
    return create_intake_app(ledger, settings, start=starts, comment=tickets.comment)


@pytest.fixture
def client(
    ledger: Ledger,
    tmp_path: Path,
    starts: Starts,
    zendesk: tuple[RunningServer, ZendeskState],
    desk: ZendeskState,
) -> Iterator[TestClient]:
    app = make_app(
        ledger,
        tmp_path,
        starts,
        zendesk[0].url,
        desk,
        intake_zendesk_secret=SECRET,
        intake_bearer_token=TOKEN,
    )
    with TestClient(app) as test_client:
        yield test_client


def ticket_id(state: ZendeskState) -> str:
    return str(next(iter(state.tickets)))


def webhook(ticket: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ticket_id": ticket, "request_type": "access", "language": "nb"}
    body["requester"] = {"email": EMAIL, "phone": PHONE, "name": NAME}
    return body | changes


def signed(body: bytes, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    stamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), stamp.encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }


def send(client: TestClient, payload: Any, **sign: Any) -> httpx.Response:
    raw = json.dumps(payload).encode()
    response: httpx.Response = client.post("/intake/zendesk", content=raw, headers=signed(raw, **sign))
    return response


def written(ledger: Ledger) -> tuple[list[str], int]:
    """The request ids and the number of events in the ledger."""
    with ledger.session() as session:
        ids = list(session.scalars(select(Request.id).order_by(Request.id)))
        return ids, session.scalar(select(func.count()).select_from(Event)) or 0


def events(ledger: Ledger, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    with ledger.session() as session:
        rows = session.scalars(select(Event).where(Event.request_id == request_id).order_by(Event.seq))
        return [(e.kind, e.data) for e in rows]


def assert_refused(response: httpx.Response, status: int, ledger: Ledger) -> None:
    """The status, a one-line JSON reason without personal data, and an untouched ledger."""
    assert response.status_code == status, response.text
    assert list(response.json()) == ["error"]
    reason = response.json()["error"]
    assert reason
    assert "\n" not in reason
    assert not [v for v in PII if v.casefold() in reason.casefold()]
    assert written(ledger) == ([], 0)


# ---- the Zendesk webhook ------------------------------------------------------------------------


def test_signed_webhook_registers_starts_and_notes_the_ticket(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState
) -> None:
    ticket = ticket_id(desk)
    response = send(client, webhook(ticket))
    assert response.status_code == 201
    answer = response.json()
    assert answer == {"request_id": answer["request_id"], "due_date": answer["due_date"], "duplicate": False}
    request_id, due = answer["request_id"], date.fromisoformat(answer["due_date"])
    assert written(ledger)[0] == [request_id]
    assert starts == [(request_id, "access")]
    note = desk.comments[int(ticket)][-1]
    assert note["public"] is False
    assert note["author_id"] == desk.agent_id
    assert request_id in note["body"]
    assert due.strftime("%d.%m.%Y") in note["body"]
    assert not [v for v in PII if v.casefold() in note["body"].casefold()]
    assert [kind for kind, _ in events(ledger, request_id)] == ["request.registered", "ticket.commented"]


def test_the_note_is_in_the_requesters_language(client: TestClient, desk: ZendeskState) -> None:
    response = send(client, webhook(ticket_id(desk), language="en", request_type="erasure"))
    due = date.fromisoformat(response.json()["due_date"])
    body = desk.comments[int(ticket_id(desk))][-1]["body"]
    assert "erasure" in body
    assert f"{due.day} {due:%B} {due.year}" in body


def test_the_same_webhook_three_times_is_one_request_started_once(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState
) -> None:
    answers = [send(client, webhook(ticket_id(desk))) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 200, 200]
    assert [a.json()["duplicate"] for a in answers] == [False, True, True]
    request_id = answers[0].json()["request_id"]
    assert {a.json()["request_id"] for a in answers} == {request_id}
    assert {a.json()["due_date"] for a in answers} == {answers[0].json()["due_date"]}
    assert written(ledger)[0] == [request_id]
    assert starts == [(request_id, "access")]
    assert len(desk.comments[int(ticket_id(desk))]) == 2  # the ticket's own comment and one note
    assert [k for k, _ in events(ledger, request_id)].count("request.repeated") == 2


def test_a_repeat_from_another_ticket_gets_the_open_requests_id_on_that_ticket(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState
) -> None:
    first = send(client, webhook(ticket_id(desk))).json()["request_id"]
    other = str(desk.add_ticket(desk.agent_id, "Innsyn igjen", [(desk.agent_id, "Igjen")]))
    again = send(client, webhook(other, requester={"email": EMAIL.upper()}))
    assert (again.status_code, again.json()["request_id"], again.json()["duplicate"]) == (200, first, True)
    assert len(starts) == 1
    assert first in desk.comments[int(other)][-1]["body"]
    assert ("request.repeated", {"ticket": f"zendesk:{other}"}) in events(ledger, first)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(
            lambda h: h | {"X-Zendesk-Webhook-Signature": "AAAA" + h["X-Zendesk-Webhook-Signature"][4:]},
            id="forged",
        ),
        pytest.param(
            lambda h: {k: v for k, v in h.items() if k != "X-Zendesk-Webhook-Signature"}, id="unsigned"
        ),
        pytest.param(
            lambda h: {k: v for k, v in h.items() if not k.endswith("Timestamp")}, id="no-timestamp"
        ),
        pytest.param(
            lambda h: h | {"X-Zendesk-Webhook-Signature-Timestamp": "yesterday"}, id="bad-timestamp"
        ),
        pytest.param(
            lambda h: h | {"X-Zendesk-Webhook-Signature-Timestamp": "2030-01-01T00:00:00"}, id="no-zone"
        ),
        pytest.param(lambda h: h | {"X-Zendesk-Webhook-Signature": GARBAGE}, id="garbage"),
    ],
)
def test_an_unsigned_or_forged_webhook_is_refused(
    client: TestClient, ledger: Ledger, desk: ZendeskState, forge: Any
) -> None:
    raw = json.dumps(webhook(ticket_id(desk))).encode()
    assert_refused(client.post("/intake/zendesk", content=raw, headers=forge(signed(raw))), 401, ledger)


@pytest.mark.parametrize(
    "sign",
    [
        pytest.param({"secret": "another-secret"}, id="wrong-secret"),
        pytest.param({"shift": timedelta(minutes=-6)}, id="stale"),
        pytest.param({"shift": timedelta(minutes=6)}, id="future"),
    ],
)
def test_wrong_secret_and_stale_timestamps_are_refused(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState, sign: dict[str, Any]
) -> None:
    if "shift" in sign:  # the moment is taken now, not at collection, which may be minutes earlier
        sign = {"at": datetime.now(UTC) + sign["shift"]}
    assert_refused(send(client, webhook(ticket_id(desk)), **sign), 401, ledger)
    assert starts == []


def test_a_body_signed_for_another_payload_is_refused(
    client: TestClient, ledger: Ledger, desk: ZendeskState
) -> None:
    raw = json.dumps(webhook(ticket_id(desk))).encode()
    headers = signed(raw.replace(b"access", b"erasure"))
    assert_refused(client.post("/intake/zendesk", content=raw, headers=headers), 401, ledger)


def test_an_oversized_body_is_refused_before_it_is_read_whole(
    client: TestClient, ledger: Ledger, desk: ZendeskState
) -> None:
    raw = json.dumps(webhook(ticket_id(desk), requester={"email": EMAIL, "name": "x" * LIMIT})).encode()
    assert_refused(client.post("/intake/zendesk", content=raw, headers=signed(raw)), 413, ledger)


def test_an_oversized_chunked_body_is_refused_over_real_http(
    ledger: Ledger,
    tmp_path: Path,
    starts: Starts,
    zendesk: tuple[RunningServer, ZendeskState],
    desk: ZendeskState,
) -> None:
    app = make_app(ledger, tmp_path, starts, zendesk[0].url, desk, intake_zendesk_secret=SECRET)
    raw = json.dumps(webhook(ticket_id(desk))).encode() + b" " * LIMIT
    chunks = (raw[i : i + 1000] for i in range(0, len(raw), 1000))  # no Content-Length: counted while read
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url) as http:
        assert_refused(http.post("/intake/zendesk", content=chunks, headers=signed(raw)), 413, ledger)
        ok = json.dumps(webhook(ticket_id(desk))).encode()
        assert http.post("/intake/zendesk", content=ok, headers=signed(ok)).status_code == 201


def test_a_wrong_content_type_is_refused(client: TestClient, ledger: Ledger, desk: ZendeskState) -> None:
    raw = json.dumps(webhook(ticket_id(desk))).encode()
    headers = signed(raw) | {"Content-Type": "application/x-www-form-urlencoded"}
    assert_refused(client.post("/intake/zendesk", content=raw, headers=headers), 415, ledger)


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"ticket_id": "1",}', b"\xff\xfe{}", b'{"a": "\\ud800"}', b"nul\x00"]
)
def test_malformed_json_is_refused(client: TestClient, ledger: Ledger, raw: bytes) -> None:
    assert_refused(client.post("/intake/zendesk", content=raw, headers=signed(raw)), 400, ledger)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"request_type": "delete-everything"}, id="unknown-type"),
        pytest.param({"request_type": "rectification"}, id="type-without-a-flow"),
        pytest.param({"requester": {"email": "not-an-address"}}, id="bad-email"),
        pytest.param({"requester": {"phone": "12"}}, id="bad-phone"),
        pytest.param({"requester": {"email": "", "phone": "", "name": NAME}}, id="no-identifier"),
        pytest.param({"requester": {"email": EMAIL, "ssn": "01017012345"}}, id="extra-requester-field"),
        pytest.param({"priority": "urgent"}, id="extra-field"),
        pytest.param({EMAIL: "a key that is personal data"}, id="personal-key"),
        pytest.param({"ticket_id": 123}, id="ticket-id-as-number"),
        pytest.param({"ticket_id": "12a"}, id="ticket-id-not-digits"),
        pytest.param({"language": "sv"}, id="language"),
        pytest.param({"requester": None}, id="no-requester"),
    ],
)
def test_schema_violations_are_refused(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState, changes: dict[str, Any]
) -> None:
    assert_refused(send(client, webhook(ticket_id(desk)) | changes), 422, ledger)
    assert starts == []


def test_a_json_array_is_a_schema_violation(client: TestClient, ledger: Ledger) -> None:
    assert_refused(send(client, [webhook("1")]), 422, ledger)


def test_without_a_configured_secret_the_webhook_is_unavailable(
    ledger: Ledger,
    tmp_path: Path,
    starts: Starts,
    zendesk: tuple[RunningServer, ZendeskState],
    desk: ZendeskState,
) -> None:
    with TestClient(make_app(ledger, tmp_path, starts, zendesk[0].url, desk)) as unconfigured:
        response = send(unconfigured, webhook(ticket_id(desk)))
        assert_refused(response, 503, ledger)
        assert "not configured" in response.json()["error"]
        assert_refused(unconfigured.post("/intake/requests", json=generic()), 503, ledger)


# ---- the flow start and the comment may fail; the request stands -------------------------------------


def test_a_flow_that_cannot_be_started_is_accepted_and_recorded(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState
) -> None:
    starts.fail = True
    response = send(client, webhook(ticket_id(desk)))
    assert (response.status_code, response.json()["duplicate"]) == (202, False)
    request_id = response.json()["request_id"]
    assert written(ledger)[0] == [request_id]
    recorded = events(ledger, request_id)
    assert ("flow.start_failed", {"error": "ConnectionError", "via": "intake"}) in recorded
    assert request_id in desk.comments[int(ticket_id(desk))][-1]["body"]  # the agent still gets the id


def test_a_failed_comment_is_recorded_not_answered_as_an_error(
    client: TestClient, ledger: Ledger, desk: ZendeskState
) -> None:
    desk.faults.server_error_next = -1
    response = send(client, webhook(ticket_id(desk)))
    assert response.status_code == 201
    kinds = [kind for kind, _ in events(ledger, response.json()["request_id"])]
    assert kinds == ["request.registered", "ticket.comment_failed"]


def test_a_comment_on_a_ticket_zendesk_does_not_know_is_recorded(client: TestClient, ledger: Ledger) -> None:
    response = send(client, webhook("424242"))
    assert response.status_code == 201
    recorded = dict(events(ledger, response.json()["request_id"]))
    assert recorded["ticket.comment_failed"] == {
        "ticket": "zendesk:424242",
        "note": "intake.note",
        "error": "PermanentError",
        "retry": False,  # Zendesk refused it for good: given up, on record for a human
        "attempts": 1,
    }


def test_nothing_personal_is_logged(
    client: TestClient, desk: ZendeskState, starts: Starts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    starts.fail = True
    send(client, webhook(ticket_id(desk)))
    send(client, webhook(ticket_id(desk), requester={"email": "x" + EMAIL}))
    messages = [record.getMessage().casefold() for record in caplog.records]
    assert any("failed" in m for m in messages)
    assert not [m for m in messages if any(v.casefold() in m for v in PII)]


# ---- the generic intake -----------------------------------------------------------------------------


def generic(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"source": "jira", "external_ref": "DSR-42", "request_type": "erasure"}
    return body | {"requester": {"phone": PHONE}, "language": "en"} | changes


def test_the_generic_intake_with_its_bearer_token(
    client: TestClient, ledger: Ledger, starts: Starts, desk: ZendeskState
) -> None:
    before = {tid: len(c) for tid, c in desk.comments.items()}
    response = client.post("/intake/requests", json=generic(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 201
    request_id = response.json()["request_id"]
    assert starts == [(request_id, "erasure")]
    with ledger.session() as session:
        assert session.get(Request, request_id).ticket_ref == "jira:DSR-42"  # type: ignore[union-attr]
    assert {tid: len(c) for tid, c in desk.comments.items()} == before  # Zendesk only
    repeat = client.post("/intake/requests", json=generic(), headers={"Authorization": f"Bearer {TOKEN}"})
    assert (repeat.status_code, repeat.json()["request_id"]) == (200, request_id)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "no-scheme", "basic", "empty"],
)
def test_the_generic_intake_refuses_without_the_token(
    client: TestClient, ledger: Ledger, headers: dict[str, str]
) -> None:
    assert_refused(client.post("/intake/requests", json=generic(), headers=headers), 401, ledger)


@pytest.mark.parametrize(
    "changes",
    [{"source": "Jira Service Desk"}, {"external_ref": "x" * 200}, {"ticket_id": "1"}, {"requester": {}}],
    ids=["source", "external-ref", "zendesk-field", "no-identifier"],
)
def test_the_generic_intake_validates_like_the_webhook(
    client: TestClient, ledger: Ledger, changes: dict[str, Any]
) -> None:
    response = client.post(
        "/intake/requests", json=generic(**changes), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert_refused(response, 422, ledger)


def test_a_rectification_carries_its_corrections_encrypted_and_is_refused_without_them(
    client: TestClient, ledger: Ledger, starts: Starts
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bare = generic(request_type="rectification", external_ref="DSR-43")
    assert_refused(client.post("/intake/requests", json=bare, headers=auth), 422, ledger)
    bad = bare | {"corrections": {"email": "not-an-address"}}
    assert_refused(client.post("/intake/requests", json=bad, headers=auth), 422, ledger)
    fixed = bare | {"corrections": {"name": "Kari  Nordmann-Berg", "email": "", "phone": "+47 913 45 678"}}
    response = client.post("/intake/requests", json=fixed, headers=auth)
    assert response.status_code == 201
    request_id = response.json()["request_id"]
    assert starts == [(request_id, "rectification")]
    with ledger.session() as session:
        details = repo.load_details(session, keys=ledger.keys, request_id=request_id)
        sealed = session.get(Request, request_id).details_ciphertext  # type: ignore[union-attr]
    assert details["corrections"] == {"name": "Kari Nordmann-Berg", "email": None, "phone": "+4791345678"}
    assert sealed is not None
    assert b"Nordmann-Berg" not in sealed  # stored encrypted, like the subject


def test_an_objection_withdrawing_consent_and_a_request_for_a_customer_are_recorded(
    client: TestClient, ledger: Ledger
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    objection = generic(request_type="objection", external_ref="DSR-44", withdraws_consent=True)
    forwarded = generic(
        external_ref="DSR-45",
        controller={"name": "Bakeriet Fjord AS", "email": "personvern@bakeriet.example"},
    )
    ids = [
        client.post("/intake/requests", json=body, headers=auth).json()["request_id"]
        for body in (objection, forwarded)
    ]
    with ledger.session() as session:
        first, second = (repo.load_details(session, keys=ledger.keys, request_id=i) for i in ids)
    assert first == {"withdraws_consent": True}
    assert second == {"controller": {"name": "Bakeriet Fjord AS", "email": "personvern@bakeriet.example"}}


# ---- the description, health, and what is not a route -------------------------------------------------


def test_the_openapi_description_is_valid_and_covers_both_posts(client: TestClient) -> None:
    from openapi_spec_validator import validate

    document = client.get("/intake/openapi.json").json()
    validate(document)
    for path in ("/intake/zendesk", "/intake/requests"):
        post = document["paths"][path]["post"]
        assert {"200", "201", "202", "400", "401", "413", "415", "422"} <= set(post["responses"])
        assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert document["components"]["schemas"]["ZendeskWebhook"]["additionalProperties"] is False


def test_health_and_unknown_routes_answer_json(client: TestClient, ledger: Ledger) -> None:
    assert client.get("/intake/health").json() == {"status": "ok"}
    assert_refused(client.get("/intake/zendesk"), 405, ledger)
    assert_refused(client.post("/intake/other", json={}), 404, ledger)


# ---- the Zendesk client on its own ------------------------------------------------------------------


def test_zendesk_tickets_adds_an_internal_note(
    zendesk: tuple[RunningServer, ZendeskState], desk: ZendeskState
) -> None:
    url = zendesk[0].url
    transport = SpecCheckingTransport(httpx.HTTPTransport(), url, "zd_tickets.yml")
    tickets = ZendeskTickets(url, desk.agent_email, desk.api_token, HttpPolicy(max_attempts=1), transport)
    tickets.comment(ticket_id(desk), "dsar-123: due 2026-03-02")
    note = desk.comments[int(ticket_id(desk))][-1]
    assert (note["body"], note["public"], transport.checked) == ("dsar-123: due 2026-03-02", False, 1)
    with pytest.raises(PermanentError):
        tickets.comment("999", "x")
    with pytest.raises(ValueError, match="number"):
        tickets.comment("1/../../users", "x")
    tickets.close()


# ---- fuzzing from the published description ---------------------------------------------------------

FUZZ_CASES = 2000
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", ""]


class Outcomes:
    """What the fuzzer saw: statuses, and the ids of the requests the intake registered."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.registered: set[str] = set()
        self.repeated: set[str] = set()

    def note(self, response: httpx.Response) -> None:
        self.statuses[response.status_code] += 1
        assert response.status_code < 500, response.text
        body = response.json()
        if response.status_code >= 400:
            assert list(body) == ["error"]
        elif body["duplicate"]:
            self.repeated.add(body["request_id"])
        else:
            self.registered.add(body["request_id"])


def fuzz_headers(path: str, raw: bytes, auth: str, content_type: str) -> dict[str, str]:
    """Valid credentials for most cases, so the payload itself is what gets tested."""
    headers = {"Content-Type": content_type} if content_type else {}
    if path == "/intake/requests":
        token = {"valid": TOKEN, "wrong": "nope", "none": ""}[auth]
        return headers | ({"Authorization": f"Bearer {token}"} if token else {})
    secret = {"valid": SECRET, "wrong": "nope", "none": ""}[auth]
    return headers | (
        {k: v for k, v in signed(raw, secret=secret).items() if k != "Content-Type"} if secret else {}
    )


def case_body(body: object, not_set: object) -> bytes:
    """A generated body as sent: JSON, or the raw bytes negative generation sometimes makes."""
    if body is not_set:
        return b""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def test_fuzzing_from_the_openapi_description_finds_no_server_error(
    client: TestClient, ledger: Ledger, starts: Starts
) -> None:
    """Generated (schema-valid) and mutated (schema-invalid) payloads for both POSTs, mostly signed."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.core import NOT_SET
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_dict(client.get("/intake/openapi.json").json())
    operations = [schema[path]["POST"] for path in ("/intake/zendesk", "/intake/requests")]
    cases = st.one_of(*(op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode))
    auths = st.sampled_from(["valid"] * 8 + ["wrong", "none"])
    seen = Outcomes()
    starts.fail = False

    @settings(max_examples=FUZZ_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases, auth=auths, content_type=st.sampled_from(CONTENT_TYPES[:2] * 8 + CONTENT_TYPES[2:]))
    def one(case: Any, auth: str, content_type: str) -> None:
        raw = case_body(case.body, NOT_SET)
        before = written(ledger)
        response = client.post(
            case.path, content=raw, headers=fuzz_headers(case.path, raw, auth, content_type)
        )
        seen.note(response)
        if response.status_code >= 400:
            assert written(ledger) == before  # nothing written for a refused payload

    one()
    assert sum(seen.statuses.values()) >= FUZZ_CASES
    assert set(written(ledger)[0]) == seen.registered
    assert seen.repeated <= seen.registered
    assert len(starts) == len(seen.registered)
    assert seen.statuses[201] >= 20  # both sides of the schema were reached
    assert seen.statuses[422] >= 200


def mutations(raw: bytes) -> st.SearchStrategy[bytes]:
    """A valid payload cut, spliced, bit-flipped or padded."""
    position = st.integers(0, len(raw))
    cut = position.map(lambda i: raw[:i])
    splice = st.tuples(position, st.binary(min_size=1, max_size=8)).map(
        lambda p: raw[: p[0]] + p[1] + raw[p[0] :]
    )
    flip = st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 7)).map(
        lambda p: raw[: p[0]] + bytes([raw[p[0]] ^ (1 << p[1])]) + raw[p[0] + 1 :]
    )
    return st.one_of(cut, splice, flip, st.just(raw + b"x" * LIMIT))


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_byte_mutations_of_a_signed_webhook_find_no_server_error(
    client: TestClient, ledger: Ledger, desk: ZendeskState
) -> None:
    """Properly signed bodies that are broken below the JSON level: 400, 413 or 422, never 5xx."""
    from hypothesis import HealthCheck, given, settings

    raw = json.dumps(webhook(ticket_id(desk), requester={"email": "ola@example.no"})).encode()
    seen = Outcomes()

    @settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(body=mutations(raw))
    def one(body: bytes) -> None:
        before = written(ledger)
        response = client.post("/intake/zendesk", content=body, headers=signed(body))
        seen.note(response)
        if response.status_code >= 400:
            assert written(ledger) == before

    one()
    assert set(written(ledger)[0]) == seen.registered
    assert {400, 413, 422} <= set(seen.statuses)


# ---- the production wiring ----------------------------------------------------------------------------


def test_dsar_serve_runs_the_intake_in_a_thread(ledger: Ledger, tmp_path: Path) -> None:
    from dsar.deployments import start_intake

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_intake(make_settings(tmp_path, intake_port=port), ledger)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/intake/health").json() == {"status": "ok"}
        with pytest.raises(ConfigurationError, match="could not listen"):
            start_intake(make_settings(tmp_path, intake_port=port), ledger)  # the port is taken
    finally:
        server.should_exit = True


def test_the_zendesk_commenter_is_wired_only_when_configured(
    tmp_path: Path, zendesk: tuple[RunningServer, ZendeskState], desk: ZendeskState
) -> None:
    from dsar.deployments import zendesk_commenter

    assert zendesk_commenter(make_settings(tmp_path)) is None
    with pytest.raises(ConfigurationError, match="TOKEN"):
        zendesk_commenter(make_settings(tmp_path, ticketing_zendesk_url=zendesk[0].url))
    wired = make_settings(
        tmp_path,
        ticketing_zendesk_url=zendesk[0].url,
        ticketing_zendesk_email=desk.agent_email,
        ticketing_zendesk_token=desk.api_token,
    )
    comment = zendesk_commenter(wired)
    assert comment is not None
    comment(ticket_id(desk), "dsar-0123: 2026-03-02")
    assert desk.comments[int(ticket_id(desk))][-1]["body"] == "dsar-0123: 2026-03-02"

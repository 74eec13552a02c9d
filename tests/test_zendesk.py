"""ZendeskSupport against the Zendesk emulator over real HTTP (uvicorn in a thread)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from emulators.server import RunningServer
from emulators.zendesk import ZendeskState, create_app, seed_demo
from emulators.zendesk_state import REDACTED
from integrations.base import Subject, System
from integrations.errors import AuthError, MalformedResponse, PermanentError, RetryableError
from integrations.http import HttpPolicy
from integrations.zendesk import ZendeskConfig, ZendeskSupport, from_config
from tests import vendor_helpers
from tests.conformance import SpecCheckingTransport
from tests.vendor_helpers import assert_clean, assert_no_personal_logs, run_emulator

url, waits = vendor_helpers.url, vendor_helpers.waits  # the shared fixtures

EMAIL, PHONE, NAME = "Kari.Nordmann@Example.no", "+4791234567", "Kari Nordmann"
KARI = Subject(email=EMAIL, phone=PHONE, name=NAME)
PII = (EMAIL, EMAIL.lower(), PHONE, "912 34 567", "91234567", NAME)
SPECS = ("zd_users.yml", "zd_search.yml", "zd_tickets.yml", "zd_comments.yml")
BOTH = {"user": 2, "identity": 4, "ticket": 4, "cc_ticket": 1, "comment": 9}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, ZendeskState]]:
    yield from run_emulator(ZendeskState(page_size=2), create_app)


@pytest.fixture
def state(server: tuple[RunningServer, ZendeskState]) -> ZendeskState:
    state = server[1]
    state.reset()
    state.rate_limit_json = False
    state.delete_removes_requested_tickets = state.deletion_completes_immediately = True
    seed_demo(state)
    return state


def _client(url: str, state: ZendeskState, waits: list[float], **kwargs: Any) -> ZendeskSupport:
    credentials: dict[str, Any] = {"agent_email": state.agent_email, "api_token": state.api_token}
    return ZendeskSupport("helpdesk", base_url=url, sleep=waits.append, **(credentials | kwargs))


@pytest.fixture
def zd(url: str, state: ZendeskState, waits: list[float]) -> Iterator[ZendeskSupport]:
    client = _client(url, state, waits)
    yield client
    client.close()


def _uid(state: ZendeskState, key: str) -> int:
    """The id of the active user with this e-mail or, failing that, this name."""
    by_email = [uid for uid, user in state.users.items() if user["email"] == key]
    return (by_email or [uid for uid, user in state.users.items() if user["name"] == key])[0]


def _bodies(state: ZendeskState) -> dict[int, list[str]]:
    return {tid: [c["body"] for c in comments] for tid, comments in state.comments.items()}


# ---- lookup and export ----------------------------------------------------------------------------


def test_is_a_system(zd: ZendeskSupport) -> None:
    assert isinstance(zd, System)
    assert zd.kind == "zendesk"
    zd.check()


def test_lookup_by_email_and_by_phone_across_pages(zd: ZendeskSupport, state: ZendeskState) -> None:
    by_email = zd.lookup(Subject(email=EMAIL))
    assert dict(by_email.counts) == {"user": 1, "identity": 3, "ticket": 3, "cc_ticket": 1, "comment": 8}
    assert dict(zd.lookup(Subject(phone=PHONE)).counts) == BOTH  # the SMS-only profile too
    assert dict(zd.lookup(Subject(phone="912 34 567")).counts) == BOTH
    assert dict(zd.lookup(KARI).counts) == BOTH


def test_export_everything_faithfully(zd: ZendeskSupport, state: ZendeskState) -> None:
    export = zd.export(KARI)
    assert export.counts() == BOTH
    users = {r.fields["name"]: r for r in export.records if r.category == "user"}
    assert set(users) == {NAME, "Kari (SMS)"}  # not Ola (his notes mention Kari), not the namesake
    assert users[NAME].fields["phone"] == "+47 912 34 567"
    assert users[NAME].fields["tags"] == "[]"
    identities = {r.fields["value"] for r in export.records if r.category == "identity"}
    assert "kari.nordmann@jobb.example.no" in identities
    assert "91234567" in identities
    cc = [r for r in export.records if r.category == "cc_ticket"]
    assert [r.fields["subject"] for r in cc] == ["Tilgang for ny kollega"]
    comments = [r.fields["body"] for r in export.records if r.category == "comment"]
    assert "Tusen takk, det går fint!" in comments  # third comment of a ticket: a second page
    assert "Hei Ola, det er ordnet." not in comments  # agent's reply on Ola's ticket is not Kari's
    assert all(r.fields["ticket_id"] for r in export.records if r.category == "comment")


def test_secondary_email_identity_is_found(zd: ZendeskSupport, state: ZendeskState) -> None:
    state.reset()
    uid = state.add_user("K. Nordmann", "k.n@gammel.example.no")
    state.add_identity(uid, "email", EMAIL)
    state.add_user("Kari Nordmann", "kari.nordmann@eksempel.no")  # namesake, other e-mail
    assert dict(zd.lookup(Subject(email=EMAIL.upper(), name=NAME)).counts)["user"] == 1


def test_unknown_subject_is_empty_and_no_identifiers_refused(zd: ZendeskSupport, state: ZendeskState) -> None:
    assert not zd.lookup(Subject(email="nobody@example.no")).found
    assert zd.export(Subject(phone="+4740000000")).records == ()
    with pytest.raises(PermanentError):
        zd.lookup(Subject(name=NAME))
    with pytest.raises(PermanentError):
        zd.lookup(Subject(phone="not a number"))


# ---- erase ----------------------------------------------------------------------------------------


def test_erase_deletes_kari_redacts_cc_and_is_idempotent(zd: ZendeskSupport, state: ZendeskState) -> None:
    ola, namesake = _uid(state, "Ola Nordmann"), _uid(state, "kari.nordmann@eksempel.no")
    untouched = {uid: (dict(state.users[uid]), list(state.identities[uid])) for uid in (ola, namesake)}
    kari = {_uid(state, EMAIL.lower()), _uid(state, "Kari (SMS)")}
    others = {t: b for t, b in _bodies(state).items() if state.tickets[t]["requester_id"] not in kari}
    outcome = zd.erase(KARI)
    assert dict(outcome.counts) == {
        "user": 2,
        "identity": 4,
        "ticket": 4,
        "comment": 7,
        "redacted_comment": 1,
    }
    assert dict(outcome.retained) == {"cc_ticket": 1, "comment": 2}
    assert "support=complete" in outcome.method
    assert not zd.lookup(KARI).found
    assert {uid: (state.users[uid], state.identities[uid]) for uid in untouched} == untouched
    assert {u["name"] for u in state.deleted_users.values()} == {"Permanently Deleted User"}
    cc = next(t for t in state.tickets.values() if t["requester_id"] == ola and t["collaborator_ids"])
    text = " ".join(state.comments[cc["id"]][i]["body"] for i in range(3)) + cc["description"]
    assert REDACTED in text
    assert not any(p.lower() in text.lower() for p in PII)
    after = _bodies(state)
    assert {tid: after[tid] for tid in others if tid != cc["id"]} == {
        t: b for t, b in others.items() if t != cc["id"]
    }
    again = zd.erase(KARI)
    assert again.total == 0
    assert sum(again.retained.values()) == 0


def test_erase_deletes_requested_tickets_when_zendesk_keeps_them(
    zd: ZendeskSupport, state: ZendeskState
) -> None:
    state.delete_removes_requested_tickets = False
    outcome = zd.erase(KARI)
    assert outcome.counts["ticket"] == 4
    assert len(state.deleted_tickets) == 4
    assert all(t["requester_id"] not in state.deleted_users for t in state.tickets.values())


def test_closed_cc_ticket_stops_erasure_before_deleting(zd: ZendeskSupport, state: ZendeskState) -> None:
    for ticket in state.tickets.values():
        ticket["status"] = "closed"
    with pytest.raises(PermanentError) as info:
        zd.erase(KARI)
    assert "closed" in str(info.value)
    assert not state.deleted_users
    assert_clean(info.value, PII)


# ---- faults ---------------------------------------------------------------------------------------


def test_rate_limit_waits_retry_after(
    zd: ZendeskSupport, state: ZendeskState, url: str, waits: list[float]
) -> None:
    state.faults.update({"rate_limit_next": 1, "retry_after_s": 2})
    assert dict(zd.lookup(KARI).counts) == BOTH
    assert waits == [2.0]


def test_server_error_burst_is_retried(zd: ZendeskSupport, state: ZendeskState, waits: list[float]) -> None:
    state.faults.update({"server_error_next": 2})
    assert zd.lookup(KARI).found
    assert len(waits) == 2


def test_server_error_forever_is_retryable(
    zd: ZendeskSupport, state: ZendeskState, waits: list[float]
) -> None:
    state.faults.update({"server_error_next": -1})
    with pytest.raises(RetryableError) as info:
        zd.lookup(KARI)
    assert info.value.status_code == 500
    assert state.faults.requests == HttpPolicy().max_attempts
    assert_clean(info.value, PII)


def test_slow_answer_times_out(url: str, state: ZendeskState, waits: list[float]) -> None:
    state.faults.update({"slow_next": -1, "slow_s": 0.3})
    client = _client(url, state, waits, policy=HttpPolicy(timeout_s=0.05, max_attempts=2))
    with pytest.raises(RetryableError) as info:
        client.lookup(KARI)
    client.close()
    assert_clean(info.value, PII)


def test_malformed_body(zd: ZendeskSupport, state: ZendeskState) -> None:
    state.faults.update({"malformed_next": 1})
    with pytest.raises(MalformedResponse) as info:
        zd.export(KARI)
    assert_clean(info.value, PII)


@pytest.mark.parametrize("expire", ["store", "fault"])
def test_expired_token_is_renewed_once(
    url: str, state: ZendeskState, waits: list[float], expire: str
) -> None:
    client = _client(
        url, state, waits, agent_email=None, client_id=state.client_id, client_secret=state.client_secret
    )
    assert client.lookup(KARI).found
    if expire == "store":
        state.tokens.expire_all()
    else:
        state.faults.update({"expire_token_next": 1})
    assert dict(client.lookup(KARI).counts) == BOTH
    client.close()
    assert state.tokens.issued == 2


def test_bad_credentials_are_auth_errors(url: str, state: ZendeskState, waits: list[float]) -> None:
    for kwargs in ({"api_token": "wrong"}, {"agent_email": None, "oauth_token": "wrong"}):
        with pytest.raises(AuthError) as info:
            _client(url, state, waits, **kwargs).lookup(KARI)
        assert info.value.status_code == 401
        assert_clean(info.value, PII)
    secret = {"agent_email": None, "client_id": state.client_id, "client_secret": "wrong"}
    with pytest.raises(AuthError):
        _client(url, state, waits, **secret).check()
    assert (
        _client(url, state, waits, agent_email=None, oauth_token="zd-static-oauth-token").lookup(KARI).found
    )


def test_no_personal_data_in_logs(
    zd: ZendeskSupport, state: ZendeskState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state.faults.update({"rate_limit_next": 1, "server_error_next": 1})
    zd.erase(KARI)
    state.faults.update({"server_error_next": -1})
    with pytest.raises(RetryableError):
        zd.lookup(KARI)
    assert_no_personal_logs(caplog, PII)


# ---- conformance and configuration ----------------------------------------------------------------


def test_requests_conform_to_zendesk_openapi(url: str, state: ZendeskState, waits: list[float]) -> None:
    users = [_uid(state, EMAIL.lower()), _uid(state, "Kari (SMS)")]
    uncovered = ("/api/v2/deleted_users/", *(f"/api/v2/users/{uid}/tickets/" for uid in users))
    transport = SpecCheckingTransport(httpx.HTTPTransport(), url, *SPECS, uncovered=uncovered)
    client = _client(url, state, waits, transport=transport)
    client.check()
    client.export(KARI)
    client.erase(KARI)
    client.close()
    assert transport.checked > 20
    assert transport.unchecked > 0


def test_from_config(url: str, state: ZendeskState) -> None:
    config = ZendeskConfig(base_url=url, agent_email=state.agent_email, api_token=SecretStr(state.api_token))
    client = from_config("helpdesk-cfg", config, HttpPolicy(max_attempts=1))
    client.check()
    client.close()
    assert state.api_token not in repr(config)
    with pytest.raises(ValidationError):
        ZendeskConfig(base_url=url, agent_email=state.agent_email)
    with pytest.raises(ValidationError):
        ZendeskConfig(base_url=url, oauth_token=SecretStr("a"), client_id="b", client_secret=SecretStr("c"))


# ---- the emulator's own contract ------------------------------------------------------------------


def _zd(url: str, state: ZendeskState) -> httpx.Client:
    return httpx.Client(base_url=url, auth=(f"{state.agent_email}/token", state.api_token))


def test_emulator_errors_and_rate_limit(url: str, state: ZendeskState) -> None:
    assert httpx.get(f"{url}/api/v2/users/me").json() == {"error": "Couldn't authenticate you"}
    with _zd(url, state) as zd:
        missing = zd.get("/api/v2/users/1/identities.json")
        state.faults.update({"rate_limit_next": 1, "retry_after_s": 1.5})
        limited = zd.get("/api/v2/users/me")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "RecordNotFound", "description": "Not found"},
    )
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.headers["content-type"].startswith("text/plain")
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"


def test_emulator_offset_and_cursor_paging(url: str, state: ZendeskState) -> None:
    kari = _uid(state, EMAIL.lower())
    with _zd(url, state) as zd:
        first = zd.get("/api/v2/users/search.json", params={"query": "91234567"}).json()
        second = zd.get(first["next_page"]).json()
        cursor = zd.get(f"/api/v2/users/{kari}/identities", params={"page[size]": 2}).json()
        rest = zd.get(cursor["links"]["next"]).json()
        offset = zd.get(f"/api/v2/users/{kari}/identities").json()
    assert (first["count"], len(first["users"]), second["next_page"]) == (3, 2, None)
    assert cursor["meta"]["has_more"]
    assert not rest["meta"]["has_more"]
    assert [i["id"] for i in cursor["identities"] + rest["identities"]] == [
        i["id"] for i in state.identities[kari]
    ]
    assert offset["count"] == 3
    assert "meta" not in offset

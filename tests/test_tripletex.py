"""Tripletex against the Tripletex emulator over real HTTP (uvicorn in a thread)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE
from emulators.server import RunningServer
from emulators.tripletex import TripletexState, create_app, seed_demo
from integrations.base import Subject, System
from integrations.errors import AuthError, MalformedResponse, PermanentError, RetryableError
from integrations.http import HttpPolicy
from integrations.tripletex import Tripletex, TripletexConfig, from_config
from tests import vendor_helpers
from tests.conformance import SpecCheckingTransport
from tests.vendor_helpers import assert_clean, assert_no_personal_logs, run_emulator

waits = vendor_helpers.waits  # the shared fixture

EMAIL = DEMO_SUBJECT.email.lower()
PHONE = DEMO_SUBJECT.phone
KARI = Subject(email=EMAIL, phone=PHONE)
ALL_OF_KARI = {"customer": 1, "contact": 1, "invoice": 3, "order": 3, "posting": 6}
PERSONAL = (EMAIL, PHONE, "912 34 567", "Kari", "Nordmann")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, TripletexState]]:
    yield from run_emulator(TripletexState(page_size=2), create_app)


@pytest.fixture
def state(server: tuple[RunningServer, TripletexState]) -> TripletexState:
    state = server[1]
    state.reset()
    state.page_size, state.send_retry_after, state.delete_refuses_bookkept = 2, True, True
    state.email_filter_ignores_case = True
    seed_demo(state)
    return state


@pytest.fixture
def url(server: tuple[RunningServer, TripletexState]) -> str:
    return server[0].url + "/v2"


def _client(url: str, state: TripletexState, waits: list[float], **kwargs: Any) -> Tripletex:
    tokens = {"consumer_token": state.consumer_token, "employee_token": state.employee_token}
    return Tripletex("accounting", base_url=url, sleep=waits.append, **(tokens | kwargs))


@pytest.fixture
def tt(url: str, state: TripletexState, waits: list[float]) -> Iterator[Tripletex]:
    client = _client(url, state, waits)
    yield client
    client.close()


def _others(state: TripletexState) -> dict[int, dict[str, Any]]:
    """Every customer record of the other people, as stored."""
    emails = {p.email for p in OTHER_PEOPLE}
    return {c["id"]: c for c in state.select("customer", lambda c: c.get("email") in emails)}


def test_is_a_system_and_check(tt: Tripletex, state: TripletexState) -> None:
    assert isinstance(tt, System)
    assert tt.kind == "tripletex"
    tt.check()
    assert state.session_creates == 1


def test_lookup_by_email_across_pages(tt: Tripletex, state: TripletexState) -> None:
    result = tt.lookup(Subject(email=EMAIL))
    assert result.system == "accounting"
    assert dict(result.counts) == ALL_OF_KARI
    assert state.faults.requests > 12  # six postings at two a page, and so on


def test_lookup_by_phone_as_typed(tt: Tripletex, state: TripletexState) -> None:
    assert dict(tt.lookup(Subject(phone="+47 912 34 567")).counts) == ALL_OF_KARI


def test_inactive_customer_is_found(tt: Tripletex, state: TripletexState) -> None:
    for customer in state.select("customer", lambda c: c.get("email") == DEMO_SUBJECT.email):
        state.records["customer"][customer["id"]]["isInactive"] = True
    assert tt.lookup(Subject(email=EMAIL)).counts["customer"] == 1
    assert tt.lookup(Subject(phone=PHONE)).counts["customer"] == 1


def test_export_is_faithful_and_skips_the_namesake(tt: Tripletex, state: TripletexState) -> None:
    export = tt.export(KARI)
    assert export.counts() == ALL_OF_KARI
    (customer,) = [r for r in export.records if r.category == "customer"]
    assert customer.fields["email"] == DEMO_SUBJECT.email
    assert customer.fields["phoneNumberMobile"] == "912 34 567"
    assert customer.fields["postalAddress.addressLine1"] == "Storgata 12"
    invoices = [r for r in export.records if r.category == "invoice"]
    assert {r.fields["customer.id"] for r in invoices} == {int(customer.record_id)}
    assert sorted(float(r.fields["amount"] or 0) for r in invoices) == [499.0, 624.5, 1249.0]
    (contact,) = [r for r in export.records if r.category == "contact"]
    assert contact.fields["phoneNumberMobile"] == "+47 912 34 567"
    assert all(
        "«årsavgift»" in str(r.fields["description"]) for r in export.records if r.category == "posting"
    )


def test_unknown_subject_is_empty_and_no_identifiers_refused(tt: Tripletex, state: TripletexState) -> None:
    assert not tt.lookup(Subject(email="nobody@example.no", phone="+4799999999")).found
    assert tt.export(Subject(email="nobody@example.no")).records == ()
    with pytest.raises(PermanentError):
        tt.lookup(Subject(name="Kari Nordmann"))


def test_erase_anonymises_retains_bookkeeping_and_is_idempotent(tt: Tripletex, state: TripletexState) -> None:
    others = copy.deepcopy(_others(state))
    outcome = tt.erase(KARI)
    assert outcome.method == "anonymise"
    assert dict(outcome.counts) == {"customer": 1, "contact": 1}
    assert dict(outcome.retained) == {"invoice": 3, "order": 3, "posting": 6}
    assert not tt.lookup(KARI).found
    (kari,) = state.select("customer", lambda c: c["name"].startswith("Anonymisert kunde"))
    assert kari["name"] == f"Anonymisert kunde {kari['id']}"
    assert kari["isInactive"] is True
    assert (kari["email"], kari["phoneNumberMobile"], kari["postalAddress"]["addressLine1"]) == ("", "", "")
    assert state.owned_by(kari["id"]) == {"invoice": 3, "order": 3, "posting": 6}
    assert [c["email"] for c in state.select("contact")] == [""]
    assert _others(state) == others
    again = tt.erase(KARI)
    assert (again.total, sum(again.retained.values())) == (0, 0)


def test_erase_deletes_a_customer_without_bookkeeping(tt: Tripletex, state: TripletexState) -> None:
    lone = state.add("customer", name="Kari N.", email="kari.lone@example.no", isInactive=False)
    outcome = tt.erase(Subject(email="kari.lone@example.no"))
    assert dict(outcome.counts) == {"customer": 1, "contact": 0}
    assert lone not in state.records["customer"]
    assert len(_others(state)) == len(OTHER_PEOPLE)


def test_refused_delete_falls_back_to_anonymising(
    url: str, state: TripletexState, waits: list[float]
) -> None:
    client = _client(url, state, waits, history_start=date(2026, 1, 1))  # sales lie before the window
    outcome = client.erase(Subject(email=EMAIL))
    client.close()
    assert dict(outcome.retained) == {"invoice": 0, "order": 0, "posting": 0}
    (kari,) = state.select("customer", lambda c: c["name"].startswith("Anonymisert kunde"))
    assert state.owned_by(kari["id"])["posting"] == 6


def test_full_scan_when_the_email_filter_heeds_case(
    url: str, state: TripletexState, waits: list[float]
) -> None:
    state.email_filter_ignores_case = False
    filtered, scanning = _client(url, state, waits), _client(url, state, waits, full_scan=True)
    assert filtered.lookup(Subject(email=EMAIL)).counts["customer"] == 0  # stored as typed, with capitals
    assert dict(scanning.lookup(Subject(email=EMAIL)).counts) == ALL_OF_KARI
    filtered.close()
    scanning.close()


def test_rate_limit_honours_retry_after(tt: Tripletex, state: TripletexState, waits: list[float]) -> None:
    state.faults.update({"rate_limit_next": 1, "retry_after_s": 2})
    assert tt.lookup(Subject(email=EMAIL)).found
    assert waits == [2.0]


def test_rate_limit_without_retry_after_waits_for_the_reset(
    tt: Tripletex, state: TripletexState, waits: list[float]
) -> None:
    state.send_retry_after = False
    state.faults.update({"rate_limit_next": 1, "retry_after_s": 7})
    assert tt.lookup(Subject(email=EMAIL)).found
    assert waits == [7.0]


def test_server_error_burst_is_retried(tt: Tripletex, state: TripletexState, waits: list[float]) -> None:
    tt.check()
    state.faults.update({"server_error_next": 2})
    assert dict(tt.lookup(KARI).counts) == ALL_OF_KARI
    assert len(waits) == 2


def test_server_error_forever_is_retryable(tt: Tripletex, state: TripletexState, waits: list[float]) -> None:
    state.faults.update({"server_error_next": -1})
    with pytest.raises(RetryableError) as info:
        tt.lookup(KARI)
    assert info.value.status_code == 500
    assert len(waits) == HttpPolicy().max_attempts - 1
    assert_clean(info.value, PERSONAL)


def test_slow_answer_is_retryable(url: str, state: TripletexState, waits: list[float]) -> None:
    client = _client(url, state, waits, policy=HttpPolicy(timeout_s=0.1, max_attempts=2))
    client.check()  # the session first, so late answers after the test touch nothing
    state.faults.update({"slow_next": 2, "slow_s": 0.3})
    with pytest.raises(RetryableError) as info:
        client.lookup(KARI)
    client.close()
    assert len(waits) == 1
    assert_clean(info.value, PERSONAL)


def test_malformed_body(tt: Tripletex, state: TripletexState) -> None:
    tt.check()
    state.faults.update({"malformed_next": 1})
    with pytest.raises(MalformedResponse) as info:
        tt.export(KARI)
    assert_clean(info.value, PERSONAL)


def test_token_expired_mid_run_is_refreshed_once(tt: Tripletex, state: TripletexState) -> None:
    tt.lookup(Subject(email=EMAIL))
    state.faults.update({"expire_token_next": 1})
    assert dict(tt.lookup(Subject(email=EMAIL)).counts) == ALL_OF_KARI
    assert state.session_creates == 2
    assert tt.auth.fetches == 2
    state.tokens.expire_all()  # sessions revoked between two calls
    assert tt.export(KARI).counts() == ALL_OF_KARI
    assert state.session_creates == 3


def test_bad_credentials_are_auth_error(url: str, state: TripletexState, waits: list[float]) -> None:
    client = _client(url, state, waits, employee_token="wrong")
    with pytest.raises(AuthError) as info:
        client.lookup(KARI)
    client.close()
    assert info.value.status_code == 403
    assert (state.session_creates, waits) == (0, [])
    assert_clean(info.value, PERSONAL)


def test_nothing_personal_in_logs(
    tt: Tripletex, state: TripletexState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state.faults.update({"rate_limit_next": 1, "server_error_next": 1})
    tt.erase(KARI)
    assert_no_personal_logs(caplog, PERSONAL)


def test_conforms_to_the_official_spec(
    server: tuple[RunningServer, TripletexState], state: TripletexState
) -> None:
    transport = SpecCheckingTransport(httpx.HTTPTransport(), server[0].url, "tripletex_openapi.json")
    client = _client(server[0].url + "/v2", state, [], transport=transport)
    client.check()
    client.lookup(Subject(email=EMAIL))
    client.export(KARI)
    client.erase(KARI)
    state.add("customer", name="Ubrukt", email="ubrukt@example.no", isInactive=False)
    client.erase(Subject(email="ubrukt@example.no"))  # DELETE
    client.close()
    assert transport.checked > 0
    assert transport.unchecked == 0


def test_from_config(url: str, state: TripletexState) -> None:
    config = TripletexConfig(
        base_url=url, consumer_token=SecretStr(state.consumer_token), employee_token=SecretStr("e-secret")
    )
    state.employee_token = "e-secret"
    client = from_config("accounting", config, HttpPolicy(max_attempts=1))
    client.check()
    client.close()
    state.employee_token = TripletexState.employee_token
    assert "e-secret" not in repr(config)
    assert client.name == "accounting"


# ---- the emulator's own contract ------------------------------------------------------------------


def _session(url: str, state: TripletexState) -> httpx.Client:
    params = {"consumerToken": state.consumer_token, "employeeToken": state.employee_token}
    answer = httpx.put(f"{url}/token/session/:create", params=params | {"expirationDate": "2030-01-01"})
    return httpx.Client(base_url=url, auth=("0", answer.json()["value"]["token"]))


def test_emulator_error_bodies(url: str, state: TripletexState) -> None:
    unauthorised = httpx.get(f"{url}/customer")
    with _session(url, state) as api:
        no_range = api.get("/invoice", params={"customerId": 1})
        state.faults.update({"rate_limit_next": 1, "retry_after_s": 3})
        limited = api.get("/customer")
    assert unauthorised.status_code == 401
    body = unauthorised.json()
    assert set(body) == {
        "status",
        "code",
        "message",
        "link",
        "developerMessage",
        "validationMessages",
        "requestId",
    }
    assert (body["status"], body["code"]) == (401, 3000)
    assert no_range.status_code == 422
    assert no_range.json()["validationMessages"][0]["field"] == "invoiceDateFrom"
    assert limited.status_code == 429
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert limited.headers["Retry-After"] == limited.headers["X-Rate-Limit-Reset"] == "3"


def test_emulator_paging_and_inactive_default(url: str, state: TripletexState) -> None:
    with _session(url, state) as api:
        first = api.get("/customer", params={"count": 100}).json()
        second = api.get("/customer", params={"from": 2}).json()
        inactive = api.get("/customer", params={"isInactive": "true"}).json()
    assert (first["fullResultSize"], first["from"], first["count"]) == (5, 0, 2)
    assert [len(first["values"]), second["from"], len(second["values"])] == [2, 2, 2]
    assert first["versionDigest"]
    assert inactive["values"] == []


def test_emulator_delete_and_version_conflict(url: str, state: TripletexState) -> None:
    (kari,) = state.select("customer", lambda c: c.get("email") == DEMO_SUBJECT.email)
    with _session(url, state) as api:
        refused = api.delete(f"/customer/{kari['id']}")
        stale = api.put(f"/customer/{kari['id']}", json={"version": 99, "name": "X"})
        state.delete_refuses_bookkept = False
        deleted = api.delete(f"/customer/{kari['id']}")
        gone = api.delete(f"/customer/{kari['id']}")
    assert (refused.status_code, refused.json()["code"]) == (422, 15000)
    assert (stale.status_code, deleted.status_code, gone.status_code) == (409, 204, 404)

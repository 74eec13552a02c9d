"""PowerOfficeGo against the PowerOffice Go v2 emulator over real HTTP (uvicorn in a thread).

No official v2 OpenAPI file is stored in ``tests/vendor-specs``, so there is no conformance run;
the emulator is strict instead (PascalCase JSON Patch paths, ``application/json-patch+json``,
subscription key and Bearer token on every call).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE
from emulators.poweroffice import PowerOfficeState, create_app, seed_demo
from emulators.server import RunningServer
from integrations.base import Subject, System
from integrations.errors import AuthError, MalformedResponse, PermanentError, RetryableError
from integrations.http import HttpPolicy
from integrations.poweroffice import PowerOfficeConfig, PowerOfficeGo, from_config
from tests import vendor_helpers
from tests.vendor_helpers import assert_clean, assert_no_personal_logs, run_emulator

url, waits = vendor_helpers.url, vendor_helpers.waits  # the shared fixtures

EMAIL, PHONE = DEMO_SUBJECT.email, DEMO_SUBJECT.phone
APP_KEY, CLIENT_KEY, SUB_KEY = "app-key", "client-key", "sub-key"
KARI = {"customer": 1, "contact_person": 1, "invoice": 3}
ADDRESS = ("AddressLine1", "AddressLine2", "City", "ZipCode")
FAST = HttpPolicy(backoff_base_s=0.01)
PERSONAL = (EMAIL, PHONE, DEMO_SUBJECT.name)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, PowerOfficeState]]:
    keys = {"application_key": APP_KEY, "client_key": CLIENT_KEY, "subscription_key": SUB_KEY}
    yield from run_emulator(PowerOfficeState(**keys, max_page_size=2), create_app)


@pytest.fixture
def state(server: tuple[RunningServer, PowerOfficeState]) -> PowerOfficeState:
    state = server[1]
    state.reset()
    state.delete_status = 204
    seed_demo(state)
    return state


def _client(
    url: str,
    waits: list[float],
    policy: HttpPolicy = FAST,
    client_key: str = CLIENT_KEY,
    sub_key: str = SUB_KEY,
) -> PowerOfficeGo:
    return PowerOfficeGo(
        "poweroffice-main",
        base_url=f"{url}/v2",
        token_url=f"{url}/OAuth/Token",
        application_key=APP_KEY,
        client_key=client_key,
        subscription_key=sub_key,
        policy=policy,
        sleep=waits.append,
    )


@pytest.fixture
def go(url: str, state: PowerOfficeState, waits: list[float]) -> Iterator[PowerOfficeGo]:
    client = _client(url, waits)
    yield client
    client.close()


def _others(state: PowerOfficeState) -> list[dict[str, Any]]:
    """Everything the emulator holds on the other people (compared before and after an erasure)."""
    emails = {p.email for p in OTHER_PEOPLE}
    customers = [c for c in state.list_customers() if c.get("EmailAddress") in emails]
    numbers = {c["Number"] for c in customers}
    people = [p for p in state.list_contact_persons(None) if p.get("EmailAddress") in emails]
    return customers + people + state.list_invoices(numbers)


# ---- lookup and export ----------------------------------------------------------------------------


def test_is_a_system(go: PowerOfficeGo) -> None:
    assert isinstance(go, System)
    assert go.kind == "poweroffice"
    go.check()


def test_lookup_by_email_reads_every_page(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    result = go.lookup(Subject(email=EMAIL.upper()))
    assert result.system == "poweroffice-main"
    assert dict(result.counts) == KARI
    # a token, then 5 customers, 4 contact persons (+ an empty page) and 3 invoices at 2 a page
    assert state.faults.requests == 3 + 3 + 2 + 1


def test_lookup_by_phone_as_typed(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    assert dict(go.lookup(Subject(phone=PHONE)).counts) == KARI  # stored "912 34 567", "+47 912 34 567"
    assert dict(go.lookup(Subject(phone="0047 912 34 567")).counts) == KARI


def test_namesake_is_told_apart(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    namesake = OTHER_PEOPLE[1]
    assert namesake.name == DEMO_SUBJECT.name
    counts = go.lookup(Subject(email=namesake.email, name=namesake.name)).counts
    assert dict(counts) == {"customer": 1, "contact_person": 1, "invoice": 1}


def test_export_is_faithful(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    state.customers[min(state.customers)]["NationalIdNumber"] = "01019900000"  # fictional
    export = go.export(Subject(email=EMAIL, phone=PHONE))
    assert export.counts() == KARI
    by_category = {r.category: r for r in export.records}
    customer = by_category["customer"].fields
    assert (customer["EmailAddress"], customer["PhoneNumber"]) == (EMAIL, "912 34 567")
    assert (customer["MailAddress.AddressLine1"], customer["MailAddress.ZipCode"]) == ("Storgata 12", "0184")
    assert customer["NationalIdNumber"] == "hidden"
    assert customer["IsPerson"] is True
    assert by_category["contact_person"].fields["Title"] == "Daglig leder, Bjørvika-kontoret"
    invoices = [r for r in export.records if r.category == "invoice"]
    assert sorted(r.fields["Balance"] for r in invoices) == [0.0, 0.0, 499.0]  # type: ignore[type-var]
    assert all(r.fields["DeliveryAddress1"] == "Storgata 12" for r in invoices)


def test_unknown_subject_is_empty(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    assert not go.lookup(Subject(email="nobody@example.no")).found
    assert go.export(Subject(phone="+4799999999")).records == ()


@pytest.mark.parametrize("subject", [Subject(name="Kari Nordmann"), Subject(phone="not a phone")])
def test_subject_without_identifiers_is_refused(go: PowerOfficeGo, subject: Subject) -> None:
    with pytest.raises(PermanentError) as info:
        go.lookup(subject)
    assert_clean(info.value, PERSONAL)


# ---- erasure --------------------------------------------------------------------------------------


def test_erase_anonymises_retains_invoices_and_is_idempotent(
    go: PowerOfficeGo, state: PowerOfficeState
) -> None:
    before = _others(state)
    subject = Subject(email=EMAIL, phone=PHONE)
    outcome = go.erase(subject)
    assert outcome.method == "delete-or-anonymise"
    assert dict(outcome.counts) == {"customer": 1, "contact_person": 1}
    assert dict(outcome.retained) == {"invoice": 3}
    kari = state.list_customers()[0]
    assert (kari["Name"], kari["EmailAddress"], kari["PhoneNumber"], kari["DateOfBirth"]) == (
        "Anonymisert",
        None,
        None,
        None,
    )
    assert kari["MailAddress"] | {"CountryCode": "NO"} == dict.fromkeys(ADDRESS, None) | {"CountryCode": "NO"}
    assert kari["IsArchived"] is False  # an open balance: Go refuses archiving
    person = next(p for p in state.list_contact_persons(None) if p["FirstName"] == "Anonymisert")
    assert (person["EmailAddress"], person["IsActive"]) == (None, False)  # an invoice names her: 409
    assert len(state.invoices) == 7
    assert _others(state) == before
    assert not go.lookup(subject).found
    again = go.erase(subject)
    assert again.total == 0
    assert dict(again.retained) == {"invoice": 0}


def test_erase_archives_when_balance_is_settled(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    for invoice in state.invoices.values():
        invoice["Balance"] = 0.0
    go.erase(Subject(email=EMAIL))
    assert state.list_customers()[0]["IsArchived"] is True


@pytest.mark.parametrize("status", [200, 204])
def test_erase_deletes_customer_without_transactions(
    go: PowerOfficeGo, state: PowerOfficeState, status: int
) -> None:
    state.delete_status = status
    lone = state.add_customer({"FirstName": "K.", "LastName": "N.", "PhoneNumber": "+47 91 23 45 67"})
    outcome = go.erase(Subject(phone=PHONE))
    assert dict(outcome.counts) == {"customer": 2, "contact_person": 1}
    assert dict(outcome.retained) == {"invoice": 3}
    assert lone not in state.customers


def test_erase_only_scrubs_a_company(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    cc = f"regnskap@fjellbekk.example.no; {EMAIL.lower()}"
    company = state.add_customer({"Name": "Nordmann Rør AS", "IsPerson": False, "InvoiceEmailAddressCC": cc})
    go.erase(Subject(email=EMAIL))
    kept = state.customers[company]
    assert (kept["Name"], kept["InvoiceEmailAddressCC"]) == (
        "Nordmann Rør AS",
        "regnskap@fjellbekk.example.no",
    )


# ---- faults ---------------------------------------------------------------------------------------


def test_rate_limit_honours_retry_after(
    go: PowerOfficeGo, state: PowerOfficeState, waits: list[float]
) -> None:
    go.check()
    state.faults.update({"rate_limit_next": 1, "retry_after_s": 3})
    assert dict(go.lookup(Subject(email=EMAIL)).counts) == KARI
    assert waits == [3.0]


def test_server_error_burst_is_retried(
    go: PowerOfficeGo, state: PowerOfficeState, waits: list[float]
) -> None:
    go.check()
    state.faults.update({"server_error_next": 2})
    assert dict(go.erase(Subject(email=EMAIL)).counts) == {"customer": 1, "contact_person": 1}
    assert len(waits) == 2


def test_server_error_forever_is_retryable(
    go: PowerOfficeGo, state: PowerOfficeState, waits: list[float]
) -> None:
    go.check()
    state.faults.update({"server_error_next": -1})
    with pytest.raises(RetryableError) as info:
        go.lookup(Subject(email=EMAIL))
    assert info.value.status_code == 500
    assert len(waits) == FAST.max_attempts - 1
    assert_clean(info.value, PERSONAL)


def test_slow_answer_times_out(url: str, state: PowerOfficeState, waits: list[float]) -> None:
    go = _client(url, waits, HttpPolicy(timeout_s=0.2, max_attempts=2, backoff_base_s=0.01))
    go.check()
    state.faults.update({"slow_next": -1, "slow_s": 0.4})
    with pytest.raises(RetryableError) as info:
        go.lookup(Subject(email=EMAIL))
    go.close()
    assert "timed out" in str(info.value)
    assert_clean(info.value, PERSONAL)


def test_malformed_body(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    go.check()
    state.faults.update({"malformed_next": 1})
    with pytest.raises(MalformedResponse) as info:
        go.export(Subject(email=EMAIL))
    assert_clean(info.value, PERSONAL)


def test_token_expired_mid_run_is_refreshed_once(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    go.check()
    state.faults.update({"expire_token_next": 1})
    assert dict(go.lookup(Subject(email=EMAIL)).counts) == KARI
    assert state.tokens.issued == 2
    assert go.auth.fetches == 2


def test_token_revoked_server_side_is_refreshed(go: PowerOfficeGo, state: PowerOfficeState) -> None:
    go.check()
    state.tokens.expire_all()
    assert go.lookup(Subject(email=EMAIL)).found
    assert state.tokens.issued == 2


@pytest.mark.parametrize(
    ("client_key", "sub_key", "status"), [("wrong", SUB_KEY, 400), (CLIENT_KEY, "wrong", 401)]
)
def test_bad_credentials_are_auth_errors(
    url: str, state: PowerOfficeState, client_key: str, sub_key: str, status: int
) -> None:
    go = _client(url, [], client_key=client_key, sub_key=sub_key)
    with pytest.raises(AuthError) as info:
        go.lookup(Subject(email=EMAIL))
    go.close()
    assert info.value.status_code == status  # invalid_client (400) / gateway (401)
    assert state.tokens.issued == 0
    assert_clean(info.value, PERSONAL)


def test_no_personal_data_in_logs(
    go: PowerOfficeGo, state: PowerOfficeState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    go.check()
    state.faults.update({"rate_limit_next": 1, "server_error_next": 1})
    go.export(Subject(email=EMAIL, phone=PHONE))
    go.erase(Subject(email=EMAIL, phone=PHONE))
    assert_no_personal_logs(caplog, (*PERSONAL, "912 34 567", "Nordmann", "Storgata"))


def test_from_config(url: str, state: PowerOfficeState) -> None:
    config = PowerOfficeConfig(
        base_url=f"{url}/v2",
        token_url=f"{url}/OAuth/Token",
        application_key=SecretStr(APP_KEY),
        client_key=SecretStr(CLIENT_KEY),
        subscription_key=SecretStr(SUB_KEY),
    )
    go = from_config("poweroffice-cfg", config, HttpPolicy(max_attempts=1))
    assert go.name == "poweroffice-cfg"
    go.check()
    go.close()
    assert SUB_KEY not in repr(config)
    assert CLIENT_KEY not in repr(config)


# ---- the emulator's own contract ------------------------------------------------------------------


def _api(url: str, state: PowerOfficeState) -> httpx.Client:
    answer = httpx.post(
        f"{url}/OAuth/Token",
        data={"grant_type": "client_credentials"},
        auth=("app-key", "client-key"),
        headers={"Ocp-Apim-Subscription-Key": "sub-key"},
    )
    bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    return httpx.Client(base_url=f"{url}/v2", headers=bearer | {"Ocp-Apim-Subscription-Key": "sub-key"})


def test_emulator_token_endpoint(url: str, state: PowerOfficeState) -> None:
    good = {"Ocp-Apim-Subscription-Key": "sub-key"}
    form = {"grant_type": "client_credentials"}
    refused = httpx.post(f"{url}/OAuth/Token", data=form, auth=("app-key", "nope"), headers=good)
    no_key = httpx.post(f"{url}/OAuth/Token", data=form, auth=("app-key", "client-key"))
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_client"
    assert no_key.status_code == 401
    assert no_key.json()["statusCode"] == 401
    assert "missing subscription key" in no_key.json()["message"]
    with _api(url, state) as api:
        assert api.get("/Customers").status_code == 200
    assert httpx.get(f"{url}/v2/Customers", headers=good).status_code == 401


def test_emulator_paging_and_429(url: str, state: PowerOfficeState) -> None:
    with _api(url, state) as api:
        first = api.get("/Customers", params={"PageNumber": 1, "PageSize": 100})
        third = api.get("/Customers", params={"PageNumber": 3, "PageSize": 100})
        bad = api.get("/Customers", params={"PageSize": 20_001})
        state.faults.update({"rate_limit_next": 1, "retry_after_s": 2})
        limited = api.get("/Customers")
    assert isinstance(first.json(), list)
    assert len(first.json()) == 2
    assert len(third.json()) == 1
    assert bad.status_code == 400
    assert bad.json()["status"] == 400
    assert bad.json()["traceId"]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert limited.json() == {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 2 seconds."}


def test_emulator_is_strict_about_json_patch(url: str, state: PowerOfficeState) -> None:
    kari = state.list_customers()[0]["Id"]
    patch = {"Content-Type": "application/json-patch+json"}
    with _api(url, state) as api:
        plain = api.patch(f"/Customers/{kari}", json=[{"op": "replace", "path": "/Name", "value": "X"}])
        camel = api.request(
            "PATCH", f"/Customers/{kari}", json=[{"op": "replace", "path": "/emailAddress"}], headers=patch
        )
        read_only = api.request(
            "PATCH",
            f"/Customers/{kari}",
            json=[{"op": "replace", "path": "/IsActive", "value": False}],
            headers=patch,
        )
        in_use = api.delete(f"/Customers/{kari}")
        missing = api.delete("/Customers/999999")
    assert plain.status_code == 415
    assert camel.status_code == 400
    assert camel.headers["content-type"] == "application/problem+json"
    assert set(camel.json()) == {"type", "title", "status", "detail", "traceId"}
    assert read_only.status_code == 400
    assert in_use.status_code == 409
    assert in_use.json()["title"] == "Conflict"
    assert missing.status_code == 404
    assert len(state.customers) == 5

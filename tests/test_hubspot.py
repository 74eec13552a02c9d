"""HubSpotCRM against the HubSpot emulator over real HTTP (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from emulators.hubspot import HubSpotState, create_app
from emulators.server import RunningServer
from integrations.base import Subject, System
from integrations.errors import AuthError, MalformedResponse, PermanentError, RetryableError
from integrations.http import HttpPolicy
from integrations.hubspot import HubSpotConfig, HubSpotCRM, from_config
from tests import vendor_helpers
from tests.vendor_helpers import assert_clean, run_emulator

url, waits = vendor_helpers.url, vendor_helpers.waits  # the shared fixtures

EMAIL = "kari.nordmann@example.no"
PHONE = "+4791234567"
TOKEN = "pat-na1-test-token"
PERSONAL = (EMAIL, PHONE)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, HubSpotState]]:
    yield from run_emulator(HubSpotState(token=TOKEN, page_size=2), create_app)


@pytest.fixture
def state(server: tuple[RunningServer, HubSpotState]) -> HubSpotState:
    server[1].reset()
    return server[1]


@pytest.fixture
def crm(url: str, state: HubSpotState, waits: list[float]) -> Iterator[HubSpotCRM]:
    client = HubSpotCRM("hubspot-main", base_url=url, token=TOKEN, sleep=waits.append)
    yield client
    client.close()


def _seed(state: HubSpotState) -> dict[str, str]:
    """Kari by email (3 notes, 3 e-mails, 3 deals), by phone and by mobile; plus a stranger."""
    by_email = state.add_contact(
        {"email": EMAIL, "firstname": "Kari", "lastname": "Nordmann", "city": "Oslo"},
        notes=[{"hs_note_body": f"Called about invoice {n}"} for n in range(3)],
        emails=[{"hs_email_subject": f"Re: order {n}", "hs_email_text": "Hei"} for n in range(3)],
        deals=[{"dealname": f"Deal {n}", "amount": "1000"} for n in range(3)],
    )
    by_phone = state.add_contact({"firstname": "Kari", "phone": PHONE}, notes=[{"hs_note_body": "x"}])
    by_mobile = state.add_contact({"firstname": "K.", "mobilephone": PHONE})
    stranger = state.add_contact(
        {"email": "ola@example.no", "phone": "+4798765432"}, notes=[{"hs_note_body": "y"}]
    )
    state.associate(by_phone, "notes", state.associations[by_email]["notes"][0])  # a shared note
    return {"email": by_email, "phone": by_phone, "mobile": by_mobile, "stranger": stranger}


def test_is_a_system(crm: HubSpotCRM) -> None:
    assert isinstance(crm, System)
    assert crm.kind == "hubspot"
    crm.check()


def test_lookup_by_email_follows_association_pages(crm: HubSpotCRM, state: HubSpotState) -> None:
    _seed(state)
    result = crm.lookup(Subject(email=EMAIL))
    assert result.system == "hubspot-main"
    assert dict(result.counts) == {"contact": 1, "note": 3, "email": 3, "deal": 3}


def test_lookup_by_phone_matches_phone_and_mobilephone(crm: HubSpotCRM, state: HubSpotState) -> None:
    _seed(state)
    result = crm.lookup(Subject(phone=PHONE))
    assert dict(result.counts) == {"contact": 2, "note": 2, "email": 0, "deal": 0}


def test_export_everything_across_pages_once(crm: HubSpotCRM, state: HubSpotState) -> None:
    ids = _seed(state)
    export = crm.export(Subject(email=EMAIL, phone=PHONE))
    assert export.counts() == {"contact": 3, "note": 4, "email": 3, "deal": 3}  # shared note once
    contacts = {r.record_id: r for r in export.records if r.category == "contact"}
    assert set(contacts) == {ids["email"], ids["phone"], ids["mobile"]}
    kari = contacts[ids["email"]]
    assert kari.fields["email"] == EMAIL
    assert kari.fields["city"] == "Oslo"
    assert kari.fields["hs_object_id"] == ids["email"]
    notes = {r.fields["hs_note_body"] for r in export.records if r.category == "note"}
    assert {"Called about invoice 0", "Called about invoice 2", "x"} <= notes
    assert {r.fields["dealname"] for r in export.records if r.category == "deal"} == {
        "Deal 0",
        "Deal 1",
        "Deal 2",
    }
    assert all(r.fields["hs_email_subject"] for r in export.records if r.category == "email")


def test_lookup_of_unknown_subject_is_empty(crm: HubSpotCRM, state: HubSpotState) -> None:
    _seed(state)
    result = crm.lookup(Subject(email="nobody@example.no"))
    assert not result.found
    assert crm.export(Subject(email="nobody@example.no")).records == ()


def test_subject_without_identifiers_is_refused(crm: HubSpotCRM) -> None:
    with pytest.raises(PermanentError):
        crm.lookup(Subject(name="Kari Nordmann"))


def test_erase_then_nothing_left_and_erase_again(crm: HubSpotCRM, state: HubSpotState) -> None:
    ids = _seed(state)
    subject = Subject(email=EMAIL, phone=PHONE)
    outcome = crm.erase(subject)
    assert outcome.method == "gdpr-delete"
    assert dict(outcome.counts) == {"contact": 3, "note": 4, "email": 3, "deal": 3}
    assert not crm.lookup(subject).found
    assert set(state.objects["contacts"]) == {ids["stranger"]}
    assert len(state.objects["notes"]) == 1
    again = crm.erase(subject)
    assert again.total == 0


def test_erase_with_stale_search_index_is_idempotent(crm: HubSpotCRM, state: HubSpotState) -> None:
    _seed(state)
    crm.erase(Subject(email=EMAIL))
    state.set_faults({"search_lag": True})  # search still returns the erased contact; delete answers 404
    assert crm.erase(Subject(email=EMAIL)).total == 0
    assert crm.lookup(Subject(email=EMAIL)).counts == {"contact": 1, "note": 0, "email": 0, "deal": 0}


def test_wrong_token_is_auth_error(url: str, state: HubSpotState) -> None:
    _seed(state)
    crm = HubSpotCRM("hubspot-main", base_url=url, token="wrong")
    with pytest.raises(AuthError) as info:
        crm.lookup(Subject(email=EMAIL))
    crm.close()
    assert info.value.status_code == 401
    assert state.request_count == 1
    assert_clean(info.value, PERSONAL)


def test_rate_limit_honours_retry_after(
    crm: HubSpotCRM, state: HubSpotState, url: str, waits: list[float]
) -> None:
    _seed(state)
    httpx.post(f"{url}/__emulator/faults", json={"rate_limit_next": 1, "retry_after_s": 2}).raise_for_status()
    assert crm.lookup(Subject(email=EMAIL)).counts["note"] == 3
    assert waits == [2.0]


def test_retry_after_above_cap_is_capped(url: str, state: HubSpotState) -> None:
    _seed(state)
    state.set_faults({"rate_limit_next": 1, "retry_after_s": 600})
    waits: list[float] = []
    policy = HttpPolicy(retry_after_cap_s=30.0)
    crm = HubSpotCRM("hubspot-main", base_url=url, token=TOKEN, policy=policy, sleep=waits.append)
    assert crm.lookup(Subject(email=EMAIL)).found
    assert waits == [30.0]


def test_server_error_forever_gives_up_after_max_attempts(
    crm: HubSpotCRM, state: HubSpotState, waits: list[float]
) -> None:
    state.set_faults({"server_error_next": -1})
    with pytest.raises(RetryableError) as info:
        crm.lookup(Subject(email=EMAIL, phone=PHONE))
    assert state.request_count == HttpPolicy().max_attempts
    assert len(waits) == HttpPolicy().max_attempts - 1
    assert info.value.status_code == 500
    assert_clean(info.value, PERSONAL)


def test_malformed_body_is_malformed_response(crm: HubSpotCRM, state: HubSpotState) -> None:
    _seed(state)
    state.set_faults({"malformed_next": 1})
    with pytest.raises(MalformedResponse) as info:
        crm.export(Subject(email=EMAIL))
    assert_clean(info.value, PERSONAL)


def test_dangling_association_fails_export_loudly(crm: HubSpotCRM, state: HubSpotState) -> None:
    ids = _seed(state)
    state.associate(ids["email"], "deals", "999999")  # HubSpot answers 207 for the missing deal
    with pytest.raises(PermanentError) as info:
        crm.export(Subject(email=EMAIL))
    assert info.value.status_code == 207
    assert_clean(info.value, PERSONAL)


def test_from_config(url: str, state: HubSpotState) -> None:
    config = HubSpotConfig(base_url=url, token=SecretStr(TOKEN))
    crm = from_config("hubspot-cfg", config, HttpPolicy(max_attempts=1))
    assert crm.name == "hubspot-cfg"
    crm.check()
    crm.close()
    assert TOKEN not in repr(config)


# ---- the emulator's own contract ------------------------------------------------------------------


def _hub(url: str, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})


def test_emulator_401_body(url: str, state: HubSpotState) -> None:
    answer = httpx.get(f"{url}/crm/v3/objects/contacts")
    assert answer.status_code == 401
    body = answer.json()
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["status"] == "error"
    assert body["message"] == "Authentication credentials not found."
    assert body["correlationId"]


def test_emulator_429_shape(url: str, state: HubSpotState) -> None:
    state.set_faults({"rate_limit_next": 1, "retry_after_s": 3})
    with _hub(url) as hub:
        answer = hub.get("/crm/v3/objects/contacts")
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "3"
    assert answer.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answer.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert answer.json()["errorType"] == "RATE_LIMIT"


def test_emulator_search_validation_and_paging(url: str, state: HubSpotState) -> None:
    _seed(state)
    with _hub(url) as hub:
        too_big = hub.post("/crm/v3/objects/contacts/search", json={"limit": 201})
        first = hub.post("/crm/v3/objects/contacts/search", json={})
        after = first.json()["paging"]["next"]["after"]
        second = hub.post("/crm/v3/objects/contacts/search", json={"after": after})
        by_email = hub.post(
            "/crm/v3/objects/contacts/search",
            json={
                "filterGroups": [
                    {"filters": [{"propertyName": "email", "operator": "EQ", "value": EMAIL.upper()}]}
                ]
            },
        )
    assert too_big.status_code == 400
    assert too_big.json()["category"] == "VALIDATION_ERROR"
    assert first.json()["total"] == 4
    assert len(first.json()["results"]) == 2
    assert "paging" not in second.json()
    assert [r["properties"]["email"] for r in by_email.json()["results"]] == [EMAIL]


def test_emulator_get_by_email_and_associations(url: str, state: HubSpotState) -> None:
    ids = _seed(state)
    with _hub(url) as hub:
        contact = hub.get(
            f"/crm/v3/objects/contacts/{EMAIL}", params={"idProperty": "email", "associations": "deals"}
        )
        assoc = hub.get(f"/crm/v4/objects/contacts/{ids['email']}/associations/notes")
        missing = hub.get("/crm/v3/objects/contacts/424242")
    assert contact.json()["id"] == ids["email"]
    assert len(contact.json()["associations"]["deals"]["results"]) == 3
    first = assoc.json()["results"][0]
    assert isinstance(first["toObjectId"], int)
    assert first["associationTypes"] == [{"category": "HUBSPOT_DEFINED", "typeId": 202, "label": None}]
    assert missing.status_code == 404


def test_emulator_gdpr_delete_modes(url: str, state: HubSpotState) -> None:
    _seed(state)
    with _hub(url) as hub:
        by_email = hub.post(
            "/crm/v3/objects/contacts/gdpr-delete", json={"objectId": EMAIL, "idProperty": "email"}
        )
        unknown_email = hub.post(
            "/crm/v3/objects/contacts/gdpr-delete",
            json={"objectId": "ghost@example.no", "idProperty": "email"},
        )
        unknown_id = hub.post("/crm/v3/objects/contacts/gdpr-delete", json={"objectId": "424242"})
    assert (by_email.status_code, unknown_email.status_code, unknown_id.status_code) == (204, 204, 404)
    assert unknown_id.json()["category"] == "OBJECT_NOT_FOUND"
    snapshot = httpx.get(f"{url}/__emulator/state").json()
    assert snapshot["blocklist"] == ["ghost@example.no"]
    assert snapshot["counts"]["contacts"] == 3


def test_emulator_admin_seed(url: str, state: HubSpotState) -> None:
    seeded = httpx.post(
        f"{url}/__emulator/seed",
        json={"contacts": [{"properties": {"email": "a@example.no"}, "notes": [{"hs_note_body": "n"}]}]},
    )
    assert len(seeded.json()["ids"]) == 1
    assert httpx.get(f"{url}/__emulator/state").json()["counts"] == {
        "contacts": 1,
        "notes": 1,
        "emails": 0,
        "deals": 0,
    }
    assert httpx.post(f"{url}/__emulator/faults", json={"nonsense": 1}).status_code == 400

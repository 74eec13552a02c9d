"""Rectify, restrict and suppress on HubSpot and Zendesk, against their emulators over real HTTP."""

from __future__ import annotations

import json as _json
import logging
from collections.abc import Iterator

import httpx
import pytest

from emulators.demo_data import DEMO_SUBJECT, seed_hubspot
from emulators.hubspot import SUBSCRIPTION_TYPES, HubSpotState
from emulators.hubspot import create_app as hubspot_app
from emulators.server import RunningServer
from emulators.zendesk import ZendeskState, seed_demo
from emulators.zendesk import create_app as zendesk_app
from integrations.base import Subject
from integrations.errors import MalformedResponse, NeedsOperator, PermanentError, RetryableError
from integrations.http import HttpPolicy
from integrations.hubspot import HubSpotConfig, HubSpotCRM
from integrations.hubspot import from_config as hubspot_from_config
from integrations.rights import Corrections, Rectifies, Restricts, Suppresses
from integrations.zendesk import ZendeskConfig, ZendeskSupport
from integrations.zendesk import from_config as zendesk_from_config
from tests import vendor_helpers
from tests.vendor_helpers import assert_clean, assert_no_personal_logs, run_emulator

waits = vendor_helpers.waits  # the shared fixture

TOKEN = "pat-na1-rights-token"
EMAIL, PHONE, NAME = DEMO_SUBJECT.email.lower(), DEMO_SUBJECT.phone, DEMO_SUBJECT.name
KARI = Subject(email=EMAIL, phone=PHONE, name=NAME)
NEW_EMAIL, NEW_PHONE, NEW_NAME = "kari.berg@example.no", "+4799887766", "Kari Anne Berg"
FIX = Corrections(name=NEW_NAME, email=NEW_EMAIL, phone=NEW_PHONE)
PERSONAL = (EMAIL, PHONE, NAME, NEW_EMAIL, NEW_PHONE, NEW_NAME, "912 34 567", "91234567")
NEWSLETTER, UPDATES = (type_id for type_id, _, _ in SUBSCRIPTION_TYPES)


class Rewrite(httpx.HTTPTransport):
    """Real HTTP, but the answer to the first request whose path holds ``part`` is replaced."""

    def __init__(self, part: str, *, content: bytes = b"", json: object = None) -> None:
        super().__init__()
        self.part, self.body = part, content if json is None else _json.dumps(json).encode()
        self.done = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if self.done or self.part not in request.url.path or request.url.path.endswith("/search"):
            return response
        response.read()
        self.done = True
        headers = {"content-type": "application/json"}
        return httpx.Response(200, content=self.body, headers=headers, request=request)


# ---- HubSpot -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hs_server() -> Iterator[tuple[RunningServer, HubSpotState]]:
    yield from run_emulator(HubSpotState(token=TOKEN, page_size=2), hubspot_app)


@pytest.fixture
def hs(hs_server: tuple[RunningServer, HubSpotState]) -> HubSpotState:
    state = hs_server[1]
    state.reset()
    seed_hubspot(state)
    return state


@pytest.fixture
def crm(
    hs_server: tuple[RunningServer, HubSpotState], hs: HubSpotState, waits: list[float]
) -> Iterator[HubSpotCRM]:
    client = HubSpotCRM("hubspot-main", base_url=hs_server[0].url, token=TOKEN, sleep=waits.append)
    yield client
    client.close()


def _hubspot(server: tuple[RunningServer, HubSpotState], transport: httpx.BaseTransport) -> HubSpotCRM:
    return HubSpotCRM("hubspot-main", base_url=server[0].url, token=TOKEN, transport=transport)


def _contacts(state: HubSpotState) -> dict[str, dict[str, str | None]]:
    return {c.id: dict(c.properties) for c in state.objects["contacts"].values()}


def _by_email(state: HubSpotState, email: str) -> str:
    return next(cid for cid, props in _contacts(state).items() if props.get("email") == email)


def test_hubspot_has_all_three_abilities(crm: HubSpotCRM) -> None:
    assert isinstance(crm, Rectifies)
    assert isinstance(crm, Restricts)
    assert isinstance(crm, Suppresses)


def test_hubspot_rectify_then_export_reads_back_others_untouched(crm: HubSpotCRM, hs: HubSpotState) -> None:
    kari = _by_email(hs, EMAIL)
    others = {cid: props for cid, props in _contacts(hs).items() if cid != kari}
    outcome = crm.rectify(KARI, FIX)
    assert (outcome.system, dict(outcome.counts)) == ("hubspot-main", {"contact": 1})
    export = crm.export(Subject(email=NEW_EMAIL))
    contact = next(r for r in export.records if r.category == "contact")
    assert contact.record_id == kari
    assert (contact.fields["firstname"], contact.fields["lastname"]) == ("Kari Anne", "Berg")
    assert (contact.fields["email"], contact.fields["phone"]) == (NEW_EMAIL, NEW_PHONE)
    assert contact.fields["city"] == "Oslo"  # what was not corrected stays
    assert {r.category for r in export.records} == {"contact", "note", "email", "deal"}  # associations kept
    assert {cid: p for cid, p in _contacts(hs).items() if cid != kari} == others
    assert not crm.lookup(Subject(email=EMAIL)).found


def test_hubspot_rectify_twice_changes_nothing(crm: HubSpotCRM, hs: HubSpotState) -> None:
    crm.rectify(KARI, FIX)
    before = _contacts(hs)
    again = crm.rectify(Subject(email=NEW_EMAIL, phone=NEW_PHONE), FIX)
    assert dict(again.counts) == {"contact": 0}
    assert _contacts(hs) == before
    assert dict(crm.rectify(KARI, FIX).counts) == {"contact": 0}  # the old e-mail finds nothing now


def test_hubspot_rectify_single_name_and_mobile_phone(crm: HubSpotCRM, hs: HubSpotState) -> None:
    mobile = hs.add_contact({"firstname": "K.", "mobilephone": PHONE})
    outcome = crm.rectify(Subject(phone=PHONE), Corrections(name="Kari", phone=NEW_PHONE))
    assert dict(outcome.counts) == {"contact": 2}
    props = hs.objects["contacts"][mobile].properties
    assert (props["firstname"], props["phone"], props["mobilephone"]) == ("Kari", NEW_PHONE, NEW_PHONE)
    assert not props.get("lastname")  # nothing to clear, so not written


def test_hubspot_restrict_and_lift_round_trip(crm: HubSpotCRM, hs: HubSpotState) -> None:
    kari = _by_email(hs, EMAIL)
    prop = "dsar_processing_restricted"
    assert dict(crm.restrict(KARI).counts) == {"contact": 1}
    assert hs.objects["contacts"][kari].properties[prop] == "true"
    assert dict(crm.restrict(KARI).counts) == {"contact": 0}  # idempotent
    assert [c for c, p in _contacts(hs).items() if p.get(prop) == "true"] == [kari]
    lifted = crm.lift_restriction(KARI)
    assert (dict(lifted.counts), lifted.method) == ({"contact": 1}, f"lift restriction ({prop})")
    assert hs.objects["contacts"][kari].properties[prop] == "false"
    assert dict(crm.lift_restriction(KARI).counts) == {"contact": 0}


def test_hubspot_restriction_property_missing_or_unconfigured(
    crm: HubSpotCRM, hs: HubSpotState, hs_server: tuple[RunningServer, HubSpotState]
) -> None:
    hs.contact_properties.discard("dsar_processing_restricted")  # the portal never defined it
    with pytest.raises(PermanentError, match="refused property 'dsar_processing_restricted'") as refused:
        crm.restrict(KARI)
    assert refused.value.status_code == 400
    assert_clean(refused.value, PERSONAL)
    config = HubSpotConfig.model_validate(
        {"base_url": hs_server[0].url, "token": TOKEN, "restriction_property": None}
    )
    unconfigured = hubspot_from_config("hubspot-main", config, HttpPolicy())
    with pytest.raises(NeedsOperator) as ask:
        unconfigured.restrict(KARI)
    assert "restriction" in ask.value.instructions
    with pytest.raises(NeedsOperator):
        unconfigured.lift_restriction(KARI)
    unconfigured.close()


def test_hubspot_suppress_unsubscribes_every_subscription_then_no_op(
    crm: HubSpotCRM, hs: HubSpotState, caplog: pytest.LogCaptureFixture
) -> None:
    assert hs.subscription_status(EMAIL) == {NEWSLETTER: "SUBSCRIBED", UPDATES: "NOT_SUBSCRIBED"}
    hs.set_subscription(EMAIL, UPDATES, "SUBSCRIBED")
    with caplog.at_level(logging.DEBUG):
        outcome = crm.suppress(KARI)
    assert dict(outcome.counts) == {"subscription": 2}
    assert hs.subscription_status(EMAIL) == {NEWSLETTER: "NOT_SUBSCRIBED", UPDATES: "NOT_SUBSCRIBED"}
    assert hs.subscription_status("ola.nordmann@example.no")[NEWSLETTER] == "SUBSCRIBED"  # others stay
    assert_no_personal_logs(caplog, PERSONAL)  # the status path's e-mail is masked in httpx's log
    before = hs.request_count
    assert dict(crm.suppress(KARI).counts) == {"subscription": 0}
    assert hs.request_count - before == 2  # one search, one status read: no unsubscribe sent


def test_hubspot_suppress_by_phone_uses_the_contacts_email(crm: HubSpotCRM, hs: HubSpotState) -> None:
    assert dict(crm.suppress(Subject(phone=PHONE)).counts) == {"subscription": 1}
    assert hs.subscription_status(EMAIL)[NEWSLETTER] == "NOT_SUBSCRIBED"


def test_hubspot_suppress_counts_already_unsubscribed_as_done(
    hs_server: tuple[RunningServer, HubSpotState], hs: HubSpotState
) -> None:
    """A stale status read meets HubSpot's 400 "already unsubscribed": success, counted as nothing done."""
    hs.set_subscription(EMAIL, NEWSLETTER, "NOT_SUBSCRIBED")
    stale = {"recipient": EMAIL, "subscriptionStatuses": [{"id": NEWSLETTER, "status": "SUBSCRIBED"}]}
    crm = _hubspot(hs_server, Rewrite("/status/email/", json=stale))
    assert dict(crm.suppress(Subject(email=EMAIL)).counts) == {"subscription": 0}
    crm.close()


def test_hubspot_suppress_without_any_email_asks_an_operator(crm: HubSpotCRM, hs: HubSpotState) -> None:
    hs.add_contact({"firstname": "K.", "mobilephone": "+4740000001"})
    with pytest.raises(NeedsOperator) as ask:
        crm.suppress(Subject(phone="+4740000001"))
    assert "e-mail" in ask.value.instructions
    assert_clean(ask.value, (*PERSONAL, "+4740000001"))
    with pytest.raises(PermanentError):
        crm.suppress(Subject(name=NAME))  # nothing to search by


def test_hubspot_rate_limit_then_success(crm: HubSpotCRM, hs: HubSpotState, waits: list[float]) -> None:
    hs.set_faults({"rate_limit_next": 2, "retry_after_s": 3})
    assert dict(crm.suppress(KARI).counts) == {"subscription": 1}
    assert waits == [3.0, 3.0]
    hs.set_faults({"rate_limit_next": 1, "retry_after_s": 2})
    assert dict(crm.rectify(KARI, Corrections(name=NEW_NAME)).counts) == {"contact": 1}
    assert waits[-1] == 2.0


@pytest.mark.parametrize("call", ["rectify", "restrict", "suppress"])
def test_hubspot_persistent_server_error_is_retryable(crm: HubSpotCRM, hs: HubSpotState, call: str) -> None:
    hs.set_faults({"server_error_next": -1})
    with pytest.raises(RetryableError) as failed:
        crm.rectify(KARI, FIX) if call == "rectify" else getattr(crm, call)(KARI)
    assert failed.value.status_code == 500
    assert_clean(failed.value, PERSONAL)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/crm/v3/objects/contacts/", b'{"id": 7}'),  # PATCH answer without properties
        ("/status/email/", b'{"recipient": "x", "subscriptionStatuses": [{"status": "SUBSCRIBED"}]}'),
        ("/status/email/", b'{"subscriptionStatuses": "none"}'),
        ("/v3/unsubscribe", b'{"id": "5001", "status": "SUBSCRIBED"}'),
        ("/v3/unsubscribe", b"<html><body>502 Bad Gatewa"),
    ],
)
def test_hubspot_malformed_answers(
    hs_server: tuple[RunningServer, HubSpotState], hs: HubSpotState, path: str, body: bytes
) -> None:
    crm = _hubspot(hs_server, Rewrite(path, content=body))
    with pytest.raises(MalformedResponse) as failed:
        crm.rectify(KARI, FIX) if path.startswith("/crm") else crm.suppress(KARI)
    assert_clean(failed.value, PERSONAL)
    crm.close()
    hs.set_faults({"malformed_next": 1})  # the emulator's own garbage, on the first request
    plain = HubSpotCRM("hubspot-main", base_url=hs_server[0].url, token=TOKEN)
    with pytest.raises(MalformedResponse):
        plain.restrict(KARI)
    plain.close()


HS_ROUTES = [
    ("PATCH", "/crm/v3/objects/contacts/1001"),
    ("GET", "/communication-preferences/v3/definitions"),
    ("GET", f"/communication-preferences/v3/status/email/{EMAIL}"),
    ("POST", "/communication-preferences/v3/unsubscribe"),
]
ZD_ROUTES = [
    ("PUT", "/api/v2/users/1"),
    ("POST", "/api/v2/users/1/identities"),
    ("PUT", "/api/v2/users/1/identities/2.json"),
    ("PUT", "/api/v2/users/1/identities/2/make_primary"),
    ("GET", "/api/v2/users/1/tags"),
    ("POST", "/api/v2/users/1/tags"),
    ("PUT", "/api/v2/users/1/tags"),
    ("DELETE", "/api/v2/users/1/tags.json"),
]


@pytest.mark.parametrize(("method", "path"), HS_ROUTES)
def test_hubspot_new_routes_meet_faults_and_auth(
    hs_server: tuple[RunningServer, HubSpotState], hs: HubSpotState, method: str, path: str
) -> None:
    url = hs_server[0].url + path
    hs.set_faults({"rate_limit_next": 1, "retry_after_s": 4})
    limited = httpx.request(method, url, json={})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "4")
    hs.set_faults({"server_error_next": 1})
    assert httpx.request(method, url, json={}).status_code == 500
    assert httpx.request(method, url, json={}).status_code == 401  # no token


@pytest.mark.parametrize(("method", "path"), ZD_ROUTES)
def test_zendesk_new_routes_meet_faults_and_auth(
    zd_server: tuple[RunningServer, ZendeskState], zs: ZendeskState, method: str, path: str
) -> None:
    url = zd_server[0].url + path
    zs.faults.update({"rate_limit_next": 1, "retry_after_s": 2})
    limited = httpx.request(method, url, json={})
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    zs.faults.update({"server_error_next": 1})
    assert httpx.request(method, url, json={}).status_code == 500
    assert httpx.request(method, url, json={}).status_code == 401  # no credentials
    auth = (f"{zs.agent_email}/token", zs.api_token)
    assert httpx.request(method, url, json={}, auth=auth).status_code in (400, 404)  # no user 1


# ---- Zendesk -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zd_server() -> Iterator[tuple[RunningServer, ZendeskState]]:
    yield from run_emulator(ZendeskState(page_size=2), zendesk_app)


@pytest.fixture
def zs(zd_server: tuple[RunningServer, ZendeskState]) -> ZendeskState:
    state = zd_server[1]
    state.reset()
    seed_demo(state)
    return state


def _zendesk(
    server: tuple[RunningServer, ZendeskState],
    waits: list[float] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> ZendeskSupport:
    state = server[1]
    return ZendeskSupport(
        "helpdesk",
        base_url=server[0].url,
        agent_email=state.agent_email,
        api_token=state.api_token,
        sleep=(waits if waits is not None else []).append,
        transport=transport,
    )


@pytest.fixture
def zd(
    zd_server: tuple[RunningServer, ZendeskState], zs: ZendeskState, waits: list[float]
) -> Iterator[ZendeskSupport]:
    client = _zendesk(zd_server, waits)
    yield client
    client.close()


def _kari(state: ZendeskState) -> tuple[int, int]:
    """Kari's web profile and her SMS-only profile."""
    web = next(uid for uid, u in state.users.items() if u["name"] == NAME and u["email"] == EMAIL)
    sms = next(uid for uid, u in state.users.items() if u["name"] == "Kari (SMS)")
    return web, sms


def _others(state: ZendeskState, kari: tuple[int, ...]) -> dict[int, object]:
    return {
        uid: (dict(u), [dict(i) for i in state.identities[uid]])
        for uid, u in state.users.items()
        if uid not in kari
    }


def test_zendesk_rectifies_and_restricts_but_does_not_suppress(zd: ZendeskSupport) -> None:
    assert isinstance(zd, Rectifies)
    assert isinstance(zd, Restricts)
    assert not isinstance(zd, Suppresses)


def test_zendesk_rectify_then_export_reads_back_others_untouched(
    zd: ZendeskSupport, zs: ZendeskState
) -> None:
    web, sms = _kari(zs)
    others = _others(zs, (web, sms))
    outcome = zd.rectify(KARI, FIX)
    assert (outcome.system, dict(outcome.counts)) == ("helpdesk", {"user": 2})
    export = zd.export(Subject(email=NEW_EMAIL, phone=NEW_PHONE))
    users = {int(r.record_id): r.fields for r in export.records if r.category == "user"}
    assert set(users) == {web, sms}
    assert users[web]["name"] == users[sms]["name"] == NEW_NAME
    assert users[web]["email"] == NEW_EMAIL  # primary e-mail is the corrected one
    assert users[sms]["email"] is None  # an e-mail is one user's: not added to the SMS profile too
    assert users[web]["phone"] == users[sms]["phone"] == NEW_PHONE
    values = [r.fields["value"] for r in export.records if r.category == "identity"]
    assert not {EMAIL, "91234567", "+47 912 34 567"} & set(values)  # the wrong values are gone
    assert "kari.nordmann@jobb.example.no" in values  # her other address was not the one corrected
    assert [i["value"] for i in zs.identities[web] if i["primary"] and i["type"] == "email"] == [NEW_EMAIL]
    assert {r.category for r in export.records} >= {"ticket", "comment"}  # tickets stay hers
    assert _others(zs, (web, sms)) == others
    assert not zd.lookup(Subject(email=EMAIL)).found


def test_zendesk_rectify_twice_changes_nothing(zd: ZendeskSupport, zs: ZendeskState) -> None:
    zd.rectify(KARI, FIX)
    before = _others(zs, ())
    again = zd.rectify(Subject(email=NEW_EMAIL, phone=NEW_PHONE), FIX)
    assert dict(again.counts) == {"user": 0}
    assert _others(zs, ()) == before
    assert dict(zd.rectify(KARI, FIX).counts) == {"user": 0}  # the old values find nobody now


def test_zendesk_rectify_email_only_updates_the_identity_in_place(
    zd: ZendeskSupport, zs: ZendeskState
) -> None:
    web, _ = _kari(zs)
    primary = next(i["id"] for i in zs.identities[web] if i["value"] == EMAIL)
    outcome = zd.rectify(Subject(email=EMAIL), Corrections(email=NEW_EMAIL))
    assert dict(outcome.counts) == {"user": 1}
    identity = next(i for i in zs.identities[web] if i["id"] == primary)
    assert (identity["value"], identity["primary"]) == (NEW_EMAIL, True)
    assert (zs.users[web]["name"], zs.users[web]["phone"]) == (NAME, "+47 912 34 567")


def test_zendesk_rectify_adds_an_email_where_none_was_held(zd: ZendeskSupport, zs: ZendeskState) -> None:
    zs.reset()
    only = zs.add_user("K. N.", None, "+47 912 34 567")
    outcome = zd.rectify(Subject(phone=PHONE), Corrections(email=NEW_EMAIL))
    assert dict(outcome.counts) == {"user": 1}
    added = [i for i in zs.identities[only] if i["type"] == "email"]
    assert [(i["value"], i["primary"]) for i in added] == [(NEW_EMAIL, True)]
    assert zs.users[only]["email"] == NEW_EMAIL
    assert dict(zd.rectify(Subject(phone=PHONE), Corrections(email=NEW_EMAIL)).counts) == {"user": 0}


def test_zendesk_rectify_secondary_email_becomes_primary(zd: ZendeskSupport, zs: ZendeskState) -> None:
    web, _ = _kari(zs)
    outcome = zd.rectify(Subject(email="kari.nordmann@jobb.example.no"), Corrections(email=NEW_EMAIL))
    assert dict(outcome.counts) == {"user": 1}
    primary = [i["value"] for i in zs.identities[web] if i["type"] == "email" and i["primary"]]
    assert primary == [NEW_EMAIL]
    assert zs.users[web]["email"] == NEW_EMAIL
    assert EMAIL in [i["value"] for i in zs.identities[web]]  # her other address stays, no longer primary


def test_zendesk_email_held_by_someone_else_is_refused(zd: ZendeskSupport, zs: ZendeskState) -> None:
    with pytest.raises(PermanentError) as refused:
        zd.rectify(Subject(email=EMAIL), Corrections(email="ola.nordmann@example.no"))
    assert refused.value.status_code == 422
    assert_clean(refused.value, (*PERSONAL, "ola.nordmann@example.no"))


def test_zendesk_restrict_and_lift_round_trip(zd: ZendeskSupport, zs: ZendeskState) -> None:
    web, sms = _kari(zs)
    zs.users[web]["tags"] = ["vip"]
    assert dict(zd.restrict(KARI).counts) == {"user": 2}
    export = zd.export(KARI)
    tags = {int(r.record_id): r.fields["tags"] for r in export.records if r.category == "user"}
    assert tags == {web: '["vip", "dsar_restricted"]', sms: '["dsar_restricted"]'}
    assert [uid for uid, u in zs.users.items() if "dsar_restricted" in u["tags"]] == [web, sms]
    assert dict(zd.restrict(KARI).counts) == {"user": 0}  # idempotent
    lifted = zd.lift_restriction(KARI)
    assert (dict(lifted.counts), lifted.method) == (
        {"user": 2},
        "lift restriction (user tag dsar_restricted)",
    )
    assert (zs.users[web]["tags"], zs.users[sms]["tags"]) == (["vip"], [])
    assert dict(zd.lift_restriction(KARI).counts) == {"user": 0}


def test_zendesk_restriction_tag_from_config_or_by_hand(
    zd_server: tuple[RunningServer, ZendeskState], zs: ZendeskState
) -> None:
    base = {"base_url": zd_server[0].url, "agent_email": zs.agent_email, "api_token": zs.api_token}
    custom = zendesk_from_config(
        "helpdesk", ZendeskConfig.model_validate(base | {"restriction_tag": "gdpr_hold"}), HttpPolicy()
    )
    assert dict(custom.restrict(Subject(email=EMAIL)).counts) == {"user": 1}
    assert "gdpr_hold" in zs.users[_kari(zs)[0]]["tags"]
    custom.close()
    manual = zendesk_from_config(
        "helpdesk", ZendeskConfig.model_validate(base | {"restriction_tag": None}), HttpPolicy()
    )
    with pytest.raises(NeedsOperator) as ask:
        manual.restrict(KARI)
    assert_clean(ask.value, PERSONAL)
    manual.close()


def test_zendesk_rate_limit_then_success(zd: ZendeskSupport, zs: ZendeskState, waits: list[float]) -> None:
    zs.faults.update({"rate_limit_next": 2, "retry_after_s": 3})
    assert dict(zd.restrict(KARI).counts) == {"user": 2}
    assert waits == [3.0, 3.0]
    zs.faults.update({"rate_limit_next": 1, "retry_after_s": 1})
    assert dict(zd.rectify(KARI, Corrections(name=NEW_NAME)).counts) == {"user": 2}
    assert waits[-1] == 1.0


@pytest.mark.parametrize("call", ["rectify", "restrict", "lift_restriction"])
def test_zendesk_persistent_server_error_is_retryable(
    zd: ZendeskSupport, zs: ZendeskState, call: str
) -> None:
    zs.faults.update({"server_error_next": -1})
    with pytest.raises(RetryableError) as failed:
        zd.rectify(KARI, FIX) if call == "rectify" else getattr(zd, call)(KARI)
    assert failed.value.status_code == 500
    assert_clean(failed.value, PERSONAL)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/make_primary", b'{"identities": "all of them"}'),
        ("/identities/", b'{"identity": {"value": "x"}}'),  # the Update Identity answer without an id
        ("/tags", b'{"tags": []}'),  # the Add Tags answer without the tag
        ("/tags", b"<html><body>502 Bad Gatewa"),
    ],
)
def test_zendesk_malformed_answers(
    zd_server: tuple[RunningServer, ZendeskState], zs: ZendeskState, path: str, body: bytes
) -> None:
    zd = _zendesk(zd_server, transport=Rewrite(path, content=body))
    subject = Subject(email="kari.nordmann@jobb.example.no")  # a secondary address: made primary
    with pytest.raises(MalformedResponse) as failed:
        zd.restrict(KARI) if path == "/tags" else zd.rectify(subject, FIX)
    assert_clean(failed.value, PERSONAL)
    zd.close()


def test_zendesk_user_update_answer_is_checked(
    zd_server: tuple[RunningServer, ZendeskState], zs: ZendeskState
) -> None:
    web, _ = _kari(zs)
    zd = _zendesk(zd_server, transport=Rewrite(f"/api/v2/users/{web}", content=b'{"users": []}'))
    with pytest.raises(MalformedResponse):
        zd.rectify(Subject(email=EMAIL), Corrections(name=NEW_NAME))
    zd.close()


def test_zendesk_logs_no_personal_data(
    zd: ZendeskSupport, zs: ZendeskState, caplog: pytest.LogCaptureFixture
) -> None:
    zs.faults.update({"rate_limit_next": 1})
    with caplog.at_level(logging.DEBUG):
        zd.rectify(KARI, FIX)
        zd.restrict(Subject(email=NEW_EMAIL))
    assert_no_personal_logs(caplog, PERSONAL)

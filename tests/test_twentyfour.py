"""TwentyFourOffice against the 24SevenOffice emulator over real HTTP (uvicorn in a thread)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE, Person
from emulators.server import RunningServer
from emulators.twentyfour import TwentyFourState, create_app, seed_demo
from emulators.twentyfour_state import person_customer
from integrations.base import Subject, System
from integrations.errors import AuthError, MalformedResponse, PermanentError, RetryableError
from integrations.http import HttpPolicy
from integrations.twentyfour import TwentyFourConfig, TwentyFourOffice, from_config
from tests import vendor_helpers
from tests.conformance import SpecCheckingTransport
from tests.vendor_helpers import assert_clean, assert_no_personal_logs, run_emulator

url, waits = vendor_helpers.url, vendor_helpers.waits  # the shared fixtures

EMAIL = "kari.nordmann@example.no"  # stored as Kari.Nordmann@Example.no
PHONE = "+4791234567"  # stored as "+47 912 34 567" and "912 34 567"
SECRETS = (EMAIL, PHONE, "Kari", "Nordmann", "912 34 567")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, TwentyFourState]]:
    yield from run_emulator(TwentyFourState(page_size=2), create_app)


@pytest.fixture
def state(server: tuple[RunningServer, TwentyFourState]) -> TwentyFourState:
    state = server[1]
    state.reset()
    state.retry_after_header, state.rate_limit_body, state.delete_refusal_status = True, None, 409
    seed_demo(state)
    return state


def _office(
    url: str,
    state: TwentyFourState,
    *,
    waits: list[float] | None = None,
    policy: HttpPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    secret: str | None = None,
) -> TwentyFourOffice:
    return TwentyFourOffice(
        "24so-main",
        base_url=f"{url}/v1",
        token_url=f"{url}/oauth/token",
        client_id=state.client_id,
        client_secret=secret or state.client_secret,
        organization_id=state.organization_id,
        policy=policy or HttpPolicy(),
        transport=transport,
        sleep=(waits if waits is not None else []).append,
    )


@pytest.fixture
def office(url: str, state: TwentyFourState, waits: list[float]) -> Iterator[TwentyFourOffice]:
    client = _office(url, state, waits=waits)
    yield client
    client.close()


def _kari_ids(state: TwentyFourState) -> tuple[int, int]:
    """Kari's main customer (e-mail and phone) and her duplicate (phone typed without +47)."""
    main = next(i for i, c in state.customers.items() if c["email"]["contact"] == DEMO_SUBJECT.email)
    duplicate = next(i for i, c in state.customers.items() if c["phone"] == "912 34 567")
    return main, duplicate


def test_is_a_system(office: TwentyFourOffice) -> None:
    assert isinstance(office, System)
    assert office.kind == "24sevenoffice"
    office.check()


def test_lookup_by_email_reads_every_page(office: TwentyFourOffice, state: TwentyFourState) -> None:
    result = office.lookup(Subject(email=EMAIL.upper()))
    assert dict(result.counts) == {"customer": 1, "salesorder": 1, "invoice": 3}
    assert state.faults.requests == 3 + 2  # three pages of customers, two of her sales orders


def test_lookup_by_phone_normalises_what_was_typed(office: TwentyFourOffice) -> None:
    result = office.lookup(Subject(phone=PHONE))
    assert dict(result.counts) == {"customer": 2, "salesorder": 2, "invoice": 3}


def test_export_everything_once_with_faithful_values(office: TwentyFourOffice) -> None:
    export = office.export(Subject(email=EMAIL, phone=PHONE))
    assert export.counts() == {"customer": 2, "invoice": 3, "salesorder": 2}
    kari = next(r for r in export.records if r.category == "customer" and r.fields["email.contact"])
    assert kari.fields["email.contact"] == DEMO_SUBJECT.email
    assert kari.fields["phone"] == "+47 912 34 567"
    assert kari.fields["address.visit.street"] == "Storgata 12"
    invoices = {r.fields["invoice.number"] for r in export.records if r.category == "invoice"}
    assert invoices == {10023, 10057, 10102}
    memos = {r.fields.get("memo") for r in export.records if r.category == "salesorder"}
    assert "Ring før levering, bor i 3. etasje, ringeklokke «Nordmann»." in memos


def test_unknown_subject_is_empty_and_name_alone_is_refused(office: TwentyFourOffice) -> None:
    assert not office.lookup(Subject(email="nobody@example.no", phone="+4799999999")).found
    assert office.export(Subject(email="nobody@example.no")).records == ()
    with pytest.raises(PermanentError):
        office.lookup(Subject(name="Kari Nordmann"))


def test_erase_deletes_or_anonymises_then_nothing_is_left(
    office: TwentyFourOffice, state: TwentyFourState
) -> None:
    main, duplicate = _kari_ids(state)
    others = {i: c for i, c in state.customers.items() if i not in (main, duplicate)}
    outcome = office.erase(Subject(email=EMAIL, phone=PHONE))
    assert outcome.method == "delete-or-anonymise"
    assert dict(outcome.counts) == {"customer": 2, "salesorder": 2}
    assert dict(outcome.retained) == {"invoice": 3}
    assert duplicate not in state.customers  # only a proposal: deleted
    kept = state.customers[main]  # has invoices: anonymised
    assert (kept["name"], kept["email"], kept["phone"]) == (
        "Anonymisert kunde",
        {"contact": None, "billing": None},
        None,
    )
    assert kept["address"]["visit"]["street"] is None
    assert {i: c for i, c in state.customers.items() if i != main} == others
    orders = [o for o in state.orders.values() if o["customer"]["id"] in (main, duplicate)]
    assert sorted(o["customer"]["name"] for o in orders) == ["Anonymisert"] * 2 + ["Kari Nordmann"] * 3
    assert not office.lookup(Subject(email=EMAIL, phone=PHONE)).found
    again = office.erase(Subject(email=EMAIL, phone=PHONE))
    assert (again.total, dict(again.retained)) == (0, {"invoice": 0})


def test_namesake_and_other_people_untouched(office: TwentyFourOffice, state: TwentyFourState) -> None:
    office.erase(Subject(email=EMAIL, phone=PHONE))
    emails = {c["email"]["contact"] for c in state.customers.values()}
    assert {p.email for p in OTHER_PEOPLE} <= emails
    namesake = Subject(email=OTHER_PEOPLE[1].email)
    assert dict(office.lookup(namesake).counts) == {"customer": 1, "salesorder": 0, "invoice": 1}


def test_company_customer_only_loses_the_subjects_contact_fields(
    office: TwentyFourOffice, state: TwentyFourState
) -> None:
    company = state.add_customer(
        {
            "name": "Nordmann Rør AS",
            "isCompany": True,
            "email": {"contact": EMAIL, "billing": "faktura@ror.no"},
        }
    )
    state.add_order(company, "Invoice")
    assert dict(office.lookup(Subject(email=EMAIL)).counts) == {"customer": 2, "salesorder": 1, "invoice": 3}
    office.erase(Subject(email=EMAIL))
    kept = state.customers[company]
    assert (kept["name"], kept["email"]) == (
        "Nordmann Rør AS",
        {"contact": None, "billing": "faktura@ror.no"},
    )


class _DeletedMeanwhile(httpx.BaseTransport):
    """Deletes the customer in the emulator just before the client's DELETE reaches it."""

    def __init__(self, state: TwentyFourState) -> None:
        self._inner, self._state = httpx.HTTPTransport(), state

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            self._state.delete_customer(int(request.url.path.rsplit("/", 1)[1]))
        return self._inner.handle_request(request)


def test_customer_deleted_meanwhile_counts_as_gone(url: str, state: TwentyFourState) -> None:
    main, duplicate = _kari_ids(state)
    office = _office(url, state, transport=_DeletedMeanwhile(state))
    outcome = office.erase(Subject(phone=PHONE))
    office.close()
    assert dict(outcome.counts) == {"customer": 1, "salesorder": 2}  # anonymised main; duplicate was gone
    assert main in state.customers
    assert duplicate not in state.customers


# ---- paging shapes ------------------------------------------------------------------------------------


def _link_transport(link: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(200, json=[{"id": 1}], headers={"Link": link})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    "link",
    [
        '<https://evil.example/v1/customers?page=2>; rel="next"',
        '</v1/customers?limit=100&sortBy=id%3Aasc>; rel="next"',
    ],
)
def test_foreign_or_looping_next_link_is_malformed(link: str) -> None:
    office = TwentyFourOffice(
        "24so-main",
        base_url="https://rest.example/v1",
        token_url="https://login.example/oauth/token",
        client_id="c",
        client_secret="s",
        organization_id="o",
        transport=_link_transport(link),
    )
    with pytest.raises(MalformedResponse):
        office.lookup(Subject(email=EMAIL))


# ---- faults -------------------------------------------------------------------------------------------


def test_rate_limit_waits_retry_after_then_succeeds(
    office: TwentyFourOffice, state: TwentyFourState, waits: list[float]
) -> None:
    state.faults.update({"rate_limit_next": 1, "retry_after_s": 2})
    assert office.lookup(Subject(email=EMAIL)).counts["invoice"] == 3
    assert waits == [2.0]


def test_rate_limit_without_retry_after_backs_off(
    office: TwentyFourOffice, state: TwentyFourState, waits: list[float]
) -> None:
    state.retry_after_header = False
    state.faults.update({"rate_limit_next": 2})
    assert office.lookup(Subject(email=EMAIL)).found
    assert waits == [0.5, 1.0]


def test_server_error_burst_is_retried(
    office: TwentyFourOffice, state: TwentyFourState, waits: list[float]
) -> None:
    state.faults.update({"server_error_next": 2})
    assert office.lookup(Subject(phone=PHONE)).counts["customer"] == 2
    assert len(waits) == 2


def test_server_error_forever_gives_up(
    office: TwentyFourOffice, state: TwentyFourState, waits: list[float]
) -> None:
    state.faults.update({"server_error_next": -1})
    with pytest.raises(RetryableError) as info:
        office.erase(Subject(email=EMAIL, phone=PHONE))
    assert info.value.status_code == 500
    assert state.faults.requests == HttpPolicy().max_attempts
    assert_clean(info.value, SECRETS)


def test_slow_answer_beyond_timeout_is_retryable(url: str, state: TwentyFourState) -> None:
    state.faults.update({"slow_next": -1, "slow_s": 0.6})
    office = _office(url, state, policy=HttpPolicy(timeout_s=0.2, max_attempts=2))
    with pytest.raises(RetryableError) as info:
        office.lookup(Subject(email=EMAIL))
    office.close()
    assert_clean(info.value, SECRETS)


def test_malformed_body_is_malformed_response(office: TwentyFourOffice, state: TwentyFourState) -> None:
    state.faults.update({"malformed_next": 1})
    with pytest.raises(MalformedResponse) as info:
        office.export(Subject(email=EMAIL))
    assert_clean(info.value, SECRETS)


def test_token_refused_mid_run_is_fetched_again_once(
    office: TwentyFourOffice, state: TwentyFourState
) -> None:
    office.check()
    state.faults.update({"expire_token_next": 1})
    assert office.lookup(Subject(email=EMAIL)).found
    assert state.tokens.issued == 2
    assert office.auth.fetches == 2


def test_token_expired_between_calls_is_fetched_again(
    office: TwentyFourOffice, state: TwentyFourState
) -> None:
    office.check()
    state.tokens.expire_all()
    assert office.export(Subject(email=EMAIL)).records
    assert state.tokens.issued == 2


def test_bad_credentials_are_auth_error(url: str, state: TwentyFourState) -> None:
    office = _office(url, state, secret="wrong-secret")
    with pytest.raises(AuthError) as info:
        office.lookup(Subject(email=EMAIL))
    office.close()
    assert info.value.status_code == 401
    assert_clean(info.value, SECRETS)


def test_nothing_personal_in_logs(
    office: TwentyFourOffice, state: TwentyFourState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state.faults.update({"rate_limit_next": 1, "server_error_next": 1, "retry_after_s": 0})
    office.export(Subject(email=EMAIL, phone=PHONE))
    office.erase(Subject(email=EMAIL, phone=PHONE))
    assert_no_personal_logs(caplog, SECRETS)


# ---- conformance and configuration ---------------------------------------------------------------------


def test_requests_conform_to_the_official_spec(url: str, state: TwentyFourState) -> None:
    # The token endpoint lives on login.24sevenoffice.com and is not part of the REST spec.
    transport = SpecCheckingTransport(
        httpx.HTTPTransport(), url, "24so_rest.yaml", uncovered=("/oauth/token",)
    )
    office = _office(url, state, transport=transport)
    subject = Subject(email=EMAIL, phone=PHONE)
    office.check()
    office.lookup(subject)
    office.export(subject)
    office.erase(subject)
    office.close()
    assert transport.checked > 20
    assert transport.unchecked == 1


def test_from_config(url: str, state: TwentyFourState) -> None:
    config = TwentyFourConfig(
        base_url=f"{url}/v1",
        token_url=f"{url}/oauth/token",
        client_id=state.client_id,
        client_secret=SecretStr(state.client_secret),
        organization_id=state.organization_id,
        page_size=50,
    )
    office = from_config("24so-cfg", config, HttpPolicy(max_attempts=1))
    office.check()
    office.close()
    assert office.name == "24so-cfg"
    assert state.client_secret not in repr(config)


# ---- the emulator's own contract ----------------------------------------------------------------------


def _bearer(url: str, state: TwentyFourState) -> httpx.Client:
    form = {
        "grant_type": "client_credentials",
        "client_id": state.client_id,
        "client_secret": state.client_secret,
    }
    form |= {"audience": state.audience, "login_organization": state.organization_id}
    token = httpx.post(f"{url}/oauth/token", data=form).json()["access_token"]
    return httpx.Client(base_url=f"{url}/v1", headers={"Authorization": f"Bearer {token}"})


def test_emulator_token_endpoint_refusals(url: str, state: TwentyFourState) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": state.client_id,
        "client_secret": state.client_secret,
    }
    no_org = httpx.post(f"{url}/oauth/token", data=form | {"audience": state.audience})
    wrong = httpx.post(f"{url}/oauth/token", data=form | {"client_secret": "x"})
    assert (no_org.status_code, wrong.status_code) == (403, 401)
    assert wrong.json()["error"] == "access_denied"
    assert httpx.get(f"{url}/v1/customers").json()["error"]["name"] == "UnauthorizedError"


def test_emulator_paging_links_and_limits(url: str, state: TwentyFourState) -> None:
    with _bearer(url, state) as api:
        first = api.get("/customers", params={"limit": 100})
        second = api.get(first.links["next"]["url"])
        too_big = api.get("/customers", params={"limit": 101})
    assert len(first.json()) == 2
    assert first.headers["X-Trace-Id"]
    assert set(second.links) == {"first", "prev", "next"}
    assert too_big.status_code == 400
    assert too_big.json()["error"]["payload"]["validationErrors"] == [{"path": "limit", "keyword": "type"}]


def test_emulator_refuses_deleting_invoiced_customer_and_changing_invoices(
    url: str, state: TwentyFourState
) -> None:
    main = _kari_ids(state)[0]
    invoice = next(
        i for i, o in state.orders.items() if o["customer"]["id"] == main and o["status"] == "Invoice"
    )
    with _bearer(url, state) as api:
        refused = api.delete(f"/customers/{main}")
        locked = api.patch(f"/salesorders/{invoice}", json={"memo": ""})
        missing = api.delete("/customers/1")
    assert (refused.status_code, locked.status_code, missing.status_code) == (409, 403, 404)
    assert set(missing.json()) == {"error", "trackingId"}


def test_emulator_configurable_rate_limit_answer(url: str, state: TwentyFourState) -> None:
    state.rate_limit_body = {"message": "API rate limit exceeded"}
    state.faults.update({"rate_limit_next": 1, "retry_after_s": 3})
    with _bearer(url, state) as api:
        answer = api.get("/customers")
    assert (answer.status_code, answer.headers["Retry-After"]) == (429, "3")
    assert answer.json() == {"message": "API rate limit exceeded"}


def test_person_customer_shape() -> None:
    person = Person("ase@example.no", "+4790000000", "Åse Ødegård", "Ærfuglveien 1", "9990", "Båtsfjord")
    shape = person_customer(person, email=None, phone="900 00 000")
    assert shape["person"] == {"firstName": "Åse", "lastName": "Ødegård"}
    assert shape["address"]["billing"]["name"] == "Åse Ødegård"
    assert shape["email"] == {"contact": None, "billing": None}

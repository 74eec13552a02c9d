"""The OIDC relying party (integrations/oidc.py) against the BankID broker emulator, over real HTTP.

Every token here is a real JWS from the emulator; every forgery it can make must be refused with
its own reason, and no message, repr or traceback may hold a national id, a name or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import traceback
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import httpx
import pytest

from emulators.oidc import (
    Breakage,
    Forgery,
    OidcProviderState,
    Person,
    create_app,
    demo_persons,
    synthetic_fnr,
)
from emulators.server import RunningServer, serve_in_thread
from integrations.oidc import (
    IdentityRejected,
    LoginStart,
    OidcClient,
    OidcConfig,
    VerifiedIdentity,
    code_from_callback,
    identity_matches,
)

CLIENT_ID, SECRET = "dsar-pipeline", "s3cret: with+odd/chars"
REDIRECT = "http://127.0.0.1:8787/identity/callback"
KARI = demo_persons()["kari"]
OLA = demo_persons()["ola"]
PERSONAL = (KARI.national_id, KARI.name, KARI.given_name, KARI.family_name, KARI.birthdate.isoformat())


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RunningServer, OidcProviderState]]:
    state = OidcProviderState(client_id=CLIENT_ID, client_secret=SECRET, redirect_uris=[REDIRECT])
    with serve_in_thread(create_app(state)) as running:
        yield running, state


@pytest.fixture
def state(server: tuple[RunningServer, OidcProviderState]) -> OidcProviderState:
    server[1].reset()
    server[1].persons = demo_persons()
    return server[1]


@pytest.fixture
def url(server: tuple[RunningServer, OidcProviderState], state: OidcProviderState) -> str:
    return server[0].url


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def config_for(url: str, **changes: object) -> OidcConfig:
    return replace(OidcConfig(url, CLIENT_ID, SECRET, REDIRECT), **changes)  # type: ignore[arg-type]


@pytest.fixture
def client(url: str, clock: FakeClock) -> Iterator[OidcClient]:
    with OidcClient(config_for(url), clock=clock) as oidc:
        yield oidc


def authorize(start: LoginStart) -> dict[str, str]:
    """Follow the authorization URL as the browser would; the query of the redirect back."""
    response = httpx.get(start.url, follow_redirects=False, timeout=5)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def login(client: OidcClient, hint: str | None = None) -> tuple[LoginStart, str]:
    """A login up to the code: the start (state, nonce, verifier) and the code from the callback."""
    start = client.start_login(login_hint=hint)
    return start, code_from_callback(authorize(start), state=start.state)


def finish(client: OidcClient, hint: str | None = None) -> VerifiedIdentity:
    start, code = login(client, hint)
    return client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)


def rejected(client: OidcClient, hint: str | None = None) -> tuple[IdentityRejected, tuple[str, ...]]:
    """The rejection of a login, and every secret the login used (for the no-leak checks)."""
    start, code = login(client, hint)
    with pytest.raises(IdentityRejected) as caught:
        client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)
    return caught.value, (code, start.code_verifier, start.nonce, SECRET)


def assert_clean(exc: BaseException, secrets: tuple[str, ...] = ()) -> None:
    """Neither the message, the repr nor the whole traceback names a person or holds a secret."""
    text = " ".join([str(exc), repr(exc), *_chain(exc)]).casefold()
    leaked = [value for value in (*PERSONAL, *secrets) if value.casefold() in text]
    assert not leaked
    assert "eyj" not in text  # the start of every JWS header


def _chain(exc: BaseException | None) -> Iterator[str]:
    """What a traceback of ``exc`` says about it and every exception it shows chained to it."""
    while exc is not None:
        yield from traceback.format_exception_only(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


# ---- the happy path --------------------------------------------------------------------------------


def test_login_verifies_kari_at_high(client: OidcClient, url: str, state: OidcProviderState) -> None:
    identity = finish(client)
    assert identity.national_id == KARI.national_id
    assert (identity.name, identity.birthdate) == ("Kari Nordmann", "1985-05-17")
    assert identity.subject == "{" + str(KARI.uid) + "}"
    assert (identity.acr, identity.loa, identity.provider) == (
        "urn:grn:authn:no:bankid:high",
        "high",
        "idura",
    )
    assert identity.issuer == url
    assert isinstance(identity.auth_time, int)
    assert state.hits == {"discovery": 1, "authorize": 1, "token": 1, "jwks": 1}


def test_authorization_url_asks_for_code_pkce_and_high_assurance(client: OidcClient, url: str) -> None:
    start = client.start_login()
    assert start.url.startswith(url + "/oauth2/authorize?")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.url).query))
    digest = hashlib.sha256(start.code_verifier.encode()).digest()
    assert query == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": start.state,
        "nonce": start.nonce,
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        "acr_values": "urn:grn:authn:no:bankid:high urn:grn:authn:no:bankid",
    }
    assert 43 <= len(start.code_verifier) <= 128
    assert start.state != client.start_login().state


def test_substantial_minimum_also_asks_for_substantial(url: str) -> None:
    with OidcClient(config_for(url, min_loa="substantial")) as oidc:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(oidc.start_login().url).query))
    assert query["acr_values"].split()[-1] == "urn:grn:authn:no:bankid:substantial"


def test_login_hint_in_iduras_form_chooses_the_person(client: OidcClient) -> None:
    identity = finish(client, hint=":" + OLA.national_id)
    assert identity.national_id == OLA.national_id
    assert identity.name == OLA.name


def test_next_person_is_used_without_a_hint(client: OidcClient, state: OidcProviderState) -> None:
    state.next_person = "ola"
    assert finish(client).national_id == OLA.national_id


def test_person_with_substantial_bankid(url: str, state: OidcProviderState) -> None:
    state.persons["kari"].acr = "urn:grn:authn:no:bankid:substantial"
    with OidcClient(config_for(url, min_loa="substantial")) as oidc:
        identity = finish(oidc)
    assert (identity.acr, identity.loa) == ("urn:grn:authn:no:bankid:substantial", "substantial")
    with OidcClient(config_for(url)) as oidc:
        exc, _ = rejected(oidc)
    assert exc.reason == "acr_too_low"


def test_unknown_acr_is_rejected(client: OidcClient, state: OidcProviderState) -> None:
    state.persons["kari"].acr = "urn:grn:authn:se:bankid"
    exc, used = rejected(client)
    assert exc.reason == "unknown_acr"
    assert_clean(exc, used)


# ---- forgeries -------------------------------------------------------------------------------------

FORGERIES: list[tuple[Forgery, str]] = [
    ("other_key", "bad_signature"),
    ("unknown_kid", "unknown_kid"),
    ("alg_none", "alg_not_allowed"),
    ("hs256_public_key", "alg_not_allowed"),
    ("expired", "expired"),
    ("future_iat", "not_yet_valid"),
    ("wrong_issuer", "wrong_issuer"),
    ("wrong_audience", "wrong_audience"),
    ("extra_audience", "azp_mismatch"),
    ("low_acr", "acr_too_low"),
    ("wrong_nonce", "nonce_mismatch"),
]


@pytest.mark.parametrize(("forge", "reason"), FORGERIES)
def test_every_forgery_is_rejected_with_its_reason(
    client: OidcClient, state: OidcProviderState, forge: Forgery, reason: str
) -> None:
    state.forge = forge
    exc, used = rejected(client)
    assert exc.reason == reason
    assert state.forge is None  # the forgery was really issued
    assert_clean(exc, used)


def test_hs256_with_the_public_key_fails_even_if_hs256_were_allowed(
    url: str, state: OidcProviderState
) -> None:
    # The JWK is bound to RS256: a misconfigured allow-list does not turn the public key into a secret.
    state.forge = "hs256_public_key"
    with OidcClient(config_for(url, algorithms=("RS256", "HS256"))) as oidc:
        exc, _ = rejected(oidc)
    assert exc.reason == "alg_not_allowed"


def test_unknown_kid_refetches_the_jwks_once_not_in_a_storm(
    client: OidcClient, state: OidcProviderState, clock: FakeClock
) -> None:
    finish(client)
    assert state.hits["jwks"] == 1
    for _ in range(3):
        state.forge = "unknown_kid"
        assert rejected(client)[0].reason == "unknown_kid"
    assert state.hits["jwks"] == 2  # one refetch for three unknown kids
    clock.now += client.config.jwks_refetch_interval_s
    state.forge = "unknown_kid"
    assert rejected(client)[0].reason == "unknown_kid"
    assert state.hits["jwks"] == 3


def test_a_rotated_key_is_found_by_the_refetch(client: OidcClient, state: OidcProviderState) -> None:
    finish(client)
    state.rotate_key()
    assert finish(client).national_id == KARI.national_id
    assert state.hits["jwks"] == 2


def test_a_fresh_jwks_is_not_fetched_twice_for_an_unknown_kid(
    client: OidcClient, state: OidcProviderState
) -> None:
    state.forge = "unknown_kid"
    assert rejected(client)[0].reason == "unknown_kid"
    assert state.hits["jwks"] == 1


def test_garbage_token_is_malformed(client: OidcClient) -> None:
    with pytest.raises(IdentityRejected) as caught:
        client.validate_id_token("not-a-jwt", nonce="n")
    assert caught.value.reason == "malformed_token"


# ---- the token endpoint ----------------------------------------------------------------------------


def test_a_code_is_redeemed_once(client: OidcClient) -> None:
    start, code = login(client)
    client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)
    with pytest.raises(IdentityRejected) as caught:
        client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)
    assert caught.value.reason == "token_exchange_failed"
    assert "400 invalid_grant" in str(caught.value)
    assert_clean(caught.value, (code, start.code_verifier))


def test_wrong_pkce_verifier_is_refused(client: OidcClient) -> None:
    start, code = login(client)
    other = client.start_login().code_verifier
    with pytest.raises(IdentityRejected) as caught:
        client.finish_login(code=code, code_verifier=other, nonce=start.nonce)
    assert caught.value.reason == "token_exchange_failed"
    assert "invalid_grant" in str(caught.value)


def test_wrong_client_secret_is_refused(url: str) -> None:
    with OidcClient(config_for(url, client_secret="not-it")) as oidc:
        start, code = login(oidc)
        with pytest.raises(IdentityRejected) as caught:
            oidc.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)
    assert "401 invalid_client" in str(caught.value)
    assert_clean(caught.value, (code, "not-it"))


# ---- discovery and broken endpoints ----------------------------------------------------------------


def test_discovery_naming_another_issuer_is_refused(client: OidcClient, state: OidcProviderState) -> None:
    state.issuer = "https://evil.example"
    with pytest.raises(IdentityRejected) as caught:
        client.start_login()
    assert caught.value.reason == "discovery_issuer_mismatch"


def test_issuer_must_match_exactly(url: str) -> None:
    with OidcClient(config_for(url + "/")) as oidc, pytest.raises(IdentityRejected) as caught:
        oidc.discover()
    assert caught.value.reason == "discovery_issuer_mismatch"


def test_discovery_is_cached(client: OidcClient, state: OidcProviderState, clock: FakeClock) -> None:
    client.discover()
    client.start_login()
    assert state.hits["discovery"] == 1
    clock.now += client.config.metadata_ttl_s
    client.discover()
    assert state.hits["discovery"] == 2


def assert_broken(exc: IdentityRejected, reason: str, breakage: Breakage, used: tuple[str, ...]) -> None:
    assert exc.reason == reason
    assert ("500" if breakage == "server_error" else "200") in str(exc)
    assert exc.__cause__ is None
    assert_clean(exc, used)


@pytest.mark.parametrize("breakage", ["server_error", "garbage"])
def test_a_broken_discovery_is_a_clear_rejection(
    client: OidcClient, state: OidcProviderState, breakage: Breakage
) -> None:
    state.broken["discovery"] = breakage
    with pytest.raises(IdentityRejected) as caught:
        client.start_login()
    assert_broken(caught.value, "discovery_failed", breakage, ())


@pytest.mark.parametrize("breakage", ["server_error", "garbage"])
@pytest.mark.parametrize(
    ("endpoint", "reason"), [("jwks", "jwks_failed"), ("token", "token_exchange_failed")]
)
def test_a_broken_jwks_or_token_endpoint_is_a_clear_rejection(
    client: OidcClient, state: OidcProviderState, endpoint: str, reason: str, breakage: Breakage
) -> None:
    start, code = login(client)
    state.broken[endpoint] = breakage
    with pytest.raises(IdentityRejected) as caught:
        client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)
    assert_broken(caught.value, reason, breakage, (code, start.code_verifier, start.nonce))


def test_an_unreachable_provider_is_a_clear_rejection() -> None:
    with (
        OidcClient(config_for("http://127.0.0.1:1", timeout_s=2)) as oidc,
        pytest.raises(IdentityRejected) as caught,
    ):
        oidc.start_login()
    assert caught.value.reason == "discovery_failed"
    assert "ConnectError" in str(caught.value)
    assert caught.value.__suppress_context__


# ---- the callback and the authorize endpoint -------------------------------------------------------


def test_callback_checks_state_and_provider_errors(client: OidcClient) -> None:
    start = client.start_login(login_hint=":00000000000")  # nobody: the provider denies
    params = authorize(start)
    assert params == {"error": "access_denied", "state": start.state}
    with pytest.raises(IdentityRejected) as caught:
        code_from_callback(params, state=start.state)
    assert (caught.value.reason, str(caught.value)) == (
        "login_failed",
        "login_failed: the provider answered access_denied",
    )
    with pytest.raises(IdentityRejected) as caught:
        code_from_callback({"code": "c", "state": "forged"}, state=start.state)
    assert caught.value.reason == "state_mismatch"
    with pytest.raises(IdentityRejected) as caught:
        code_from_callback({"error": "<script>" + KARI.name, "state": start.state}, state=start.state)
    assert_clean(caught.value)


def test_authorize_never_redirects_to_an_unregistered_uri(url: str) -> None:
    query = {"client_id": CLIENT_ID, "redirect_uri": "https://evil.example/cb", "response_type": "code"}
    response = httpx.get(f"{url}/oauth2/authorize", params=query)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"code_challenge_method": "plain"}, "code_challenge_method must be S256"),
        ({"code_challenge": ""}, "code_challenge is required"),
        ({"response_type": "token"}, "response_type must be code"),
        ({"nonce": ""}, "nonce is required"),
    ],
)
def test_authorize_refuses_a_bad_request_by_redirect(
    client: OidcClient, change: dict[str, str], problem: str
) -> None:
    start = client.start_login()
    parts = urllib.parse.urlsplit(start.url)
    query = dict(urllib.parse.parse_qsl(parts.query)) | change
    bad = replace(start, url=parts._replace(query=urllib.parse.urlencode(query)).geturl())
    assert authorize(bad) == {"error": "invalid_request", "error_description": problem, "state": start.state}


# ---- other flavours --------------------------------------------------------------------------------


@pytest.fixture
def flavoured() -> Iterator[tuple[str, OidcProviderState]]:
    state = OidcProviderState(client_id=CLIENT_ID, client_secret=SECRET, redirect_uris=[REDIRECT])
    with serve_in_thread(create_app(state)) as running:
        yield running.url, state


def test_signicat_flavour_gives_nin_and_nbid_acr(flavoured: tuple[str, OidcProviderState]) -> None:
    url, state = flavoured
    state.flavour = "signicat"
    with OidcClient(config_for(url)) as oidc:
        assert "scope=openid+profile+nin" in oidc.start_login().url
        identity = finish(oidc)
        state.forge = "low_acr"
        assert rejected(oidc)[0].reason == "acr_too_low"
    assert (identity.provider, identity.national_id, identity.name) == (
        "signicat",
        KARI.national_id,
        KARI.name,
    )
    assert (identity.acr, identity.loa) == ("urn:bankid:bid;LOA=4", "high")


def test_idporten_flavour_gives_pid_and_no_name(flavoured: tuple[str, OidcProviderState]) -> None:
    url, state = flavoured
    state.flavour = "idporten"
    with OidcClient(config_for(url)) as oidc:
        identity = finish(oidc)
        state.forge = "low_acr"
        assert rejected(oidc)[0].reason == "acr_too_low"
    assert (identity.provider, identity.national_id, identity.name, identity.birthdate) == (
        "idporten",
        KARI.national_id,
        None,
        None,
    )
    assert (identity.acr, identity.loa) == ("idporten-loa-high", "high")


# ---- matching and what may be shown ----------------------------------------------------------------


def keyed(value: str) -> str:
    return hmac.new(b"test-hash-key", value.encode(), hashlib.sha256).hexdigest()


IDENTITY = VerifiedIdentity(
    subject="{sub}",
    national_id=KARI.national_id,
    name="Kari  Nordmann",
    birthdate="1985-04-12",
    acr="urn:grn:authn:no:bankid:high",
    loa="high",
    provider="idura",
    issuer="https://broker.example",
)


def test_identity_matches_by_keyed_national_id_hash() -> None:
    held = keyed(KARI.national_id)
    assert identity_matches(IDENTITY, national_id_hash=held, name=None, birthdate=None, hash_fn=keyed)
    spaced = replace(IDENTITY, national_id=f"{KARI.national_id[:6]} {KARI.national_id[6:]}")
    assert identity_matches(spaced, national_id_hash=held, name=None, birthdate=None, hash_fn=keyed)
    other = keyed(OLA.national_id)
    assert not identity_matches(IDENTITY, national_id_hash=other, name=None, birthdate=None, hash_fn=keyed)


def test_a_held_national_id_decides_alone() -> None:
    held = keyed(OLA.national_id)  # right name and birth date do not outvote a wrong number
    assert not identity_matches(
        IDENTITY, national_id_hash=held, name="Kari Nordmann", birthdate="1985-04-12", hash_fn=keyed
    )
    no_id = replace(IDENTITY, national_id=None)
    assert not identity_matches(no_id, national_id_hash=keyed(""), name=None, birthdate=None, hash_fn=keyed)


def test_identity_matches_by_name_and_birthdate_without_a_national_id() -> None:
    def match(name: str | None, birthdate: str | None) -> bool:
        return identity_matches(
            IDENTITY, national_id_hash=None, name=name, birthdate=birthdate, hash_fn=keyed
        )

    assert match("  kari\tNORDMANN ", "1985-04-12")
    assert not match("Kari Nordmann", "1985-04-13")
    assert not match("Kari Nordmand", "1985-04-12")
    assert not match("Kari Nordmann", None)
    assert not match(None, "1985-04-12")


def test_name_normalisation_is_unicode_aware() -> None:
    decomposed = replace(IDENTITY, name="Bjo\u0308rn Ødegård")
    assert identity_matches(
        decomposed, national_id_hash=None, name="BJÖRN ØDEGÅRD", birthdate="1985-04-12", hash_fn=keyed
    )


def test_reprs_show_no_person_and_no_secret(client: OidcClient) -> None:
    for shown in (repr(IDENTITY), str(IDENTITY), f"{IDENTITY}"):
        assert_clean(Exception(shown))
        assert "'high'" in shown
    start = client.start_login(login_hint=":" + KARI.national_id)
    assert_clean(Exception(repr(start)), (start.nonce, start.code_verifier))
    assert SECRET not in repr(client.config)


def test_nothing_personal_is_logged(client: OidcClient, caplog: pytest.LogCaptureFixture) -> None:
    start, code = login(client)
    caplog.set_level(logging.DEBUG)
    client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)
    text = " ".join(record.getMessage() for record in caplog.records).casefold()
    assert not [v for v in (*PERSONAL, code, start.code_verifier, SECRET) if v.casefold() in text]


# ---- the emulator's test persons -------------------------------------------------------------------


def test_synthetic_fodselsnummer_has_valid_check_digits() -> None:
    number = synthetic_fnr(date(1985, 4, 12))
    assert number[:6] == "128485"  # month + 80 marks it as synthetic
    digits = [int(c) for c in number]
    assert sum(d * w for d, w in zip(digits[:10], (3, 7, 6, 1, 8, 9, 4, 5, 2, 1), strict=True)) % 11 == 0
    assert sum(d * w for d, w in zip(digits, (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1), strict=True)) % 11 == 0
    assert synthetic_fnr(date(2004, 2, 29))[6:9] >= "500"
    assert Person("A", "B", date(1990, 1, 1)).national_id == synthetic_fnr(date(1990, 1, 1))

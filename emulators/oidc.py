"""A local OpenID Connect provider: a BankID broker (Idura flavour by default) for tests and the demo.

Speaks Idura's paths (``/.well-known/openid-configuration``, ``/.well-known/jwks``,
``GET /oauth2/authorize``, ``POST /oauth2/token``) and issues RS256 id_tokens with a ``kid``
from an RSA key generated in memory at start. ``flavour`` switches the claims to Signicat's
(``nin``, ``nbid_acr``) or ID-porten's (``pid``, ``idporten-loa-*``).

Authentication is instant: no UI. The person is the one named by ``login_hint`` (a key of
``state.persons`` or a national id, Idura's ``:<nin>`` form accepted), else ``state.next_person``,
else the first person; the token's ``acr`` is the person's configured one, else the first
requested acr the flavour knows, else the flavour's highest.

The issuer is ``state.issuer`` if set, else the base URL the request came to (so it is right
as soon as ``serve_in_thread`` returns). Switches for tests:

* ``state.forge`` spoils the next issued id_token (see :data:`Forgery`), then resets itself;
* ``state.broken["discovery" | "jwks" | "token"] = "server_error" | "garbage"`` breaks an endpoint;
* ``state.rotate_key()`` signs with a new key from then on; ``state.hits`` counts requests.

National ids are synthetic fødselsnummer (month + 80, as the Norwegian test registry uses),
with valid check digits: :func:`synthetic_fnr`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from emulators.faults import malformed

__all__ = [
    "Breakage",
    "Flavour",
    "Forgery",
    "OidcProviderState",
    "Person",
    "SigningKey",
    "create_app",
    "demo_persons",
    "synthetic_fnr",
]

Forgery = Literal[
    "other_key",  # signed by a key the JWKS does not hold, under the real kid
    "unknown_kid",  # signed by another key under a kid the JWKS does not hold
    "alg_none",  # unsigned
    "hs256_public_key",  # HS256 with the provider's public key PEM as the HMAC secret
    "expired",
    "future_iat",  # issued an hour from now
    "wrong_issuer",
    "wrong_audience",
    "extra_audience",  # aud = [client, another], no azp
    "low_acr",  # the flavour's lowest acr
    "wrong_nonce",
]
Flavour = Literal["idura", "signicat", "idporten"]
Breakage = Literal["server_error", "garbage"]

# acr values each flavour knows, highest first.
ACR_VALUES: Mapping[Flavour, tuple[str, ...]] = {
    "idura": (
        "urn:grn:authn:no:bankid:high",
        "urn:grn:authn:no:bankid",
        "urn:grn:authn:no:bankid:substantial",
    ),
    "signicat": ("urn:bankid:bid;LOA=4", "urn:bankid:bid;LOA=3"),
    "idporten": ("idporten-loa-high", "idporten-loa-substantial", "idporten-loa-low"),
}
SCOPES: Mapping[Flavour, tuple[str, ...]] = {
    "idura": ("openid",),
    "signicat": ("openid", "profile", "nin", "idp_id"),
    "idporten": ("openid", "profile"),
}
FOREIGN_ISSUER, FOREIGN_AUDIENCE = "https://evil.example", "someone-else"
_NAMESPACE = uuid.UUID("6f0c7f1e-2b8a-4c55-9d0e-1d5a3c1b7e42")  # makes each person's sub stable


def synthetic_fnr(born: date, serial: int = 0) -> str:
    """A synthetic Norwegian fødselsnummer for ``born``: month + 80, valid mod-11 check digits."""
    first = 0 if born.year < 2000 else 500  # individual numbers 000-499: 1900-1999, 500-999: 2000-2039
    for individual in range(first + serial, first + 500):
        digits = [int(c) for c in f"{born.day:02d}{born.month + 80:02d}{born.year % 100:02d}{individual:03d}"]
        k1 = _check_digit(digits, (3, 7, 6, 1, 8, 9, 4, 5, 2))
        k2 = _check_digit([*digits, k1], (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)) if k1 is not None else None
        if k1 is not None and k2 is not None:
            return "".join(map(str, [*digits, k1, k2]))
    raise ValueError("no synthetic number left for that date")


def _check_digit(digits: list[int], weights: tuple[int, ...]) -> int | None:
    rest = 11 - sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if rest == 11 else None if rest == 10 else rest


@dataclass
class Person:
    """A test person with a BankID. ``acr`` None means: whatever the relying party asked for."""

    given_name: str
    family_name: str
    birthdate: date
    national_id: str = ""  # a synthetic fødselsnummer for the birth date when empty
    acr: str | None = None

    def __post_init__(self) -> None:
        self.national_id = self.national_id or synthetic_fnr(self.birthdate)

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def uid(self) -> uuid.UUID:
        return uuid.uuid5(_NAMESPACE, self.national_id)


def demo_persons() -> dict[str, Person]:
    """Kari Nordmann (the demo's data subject) and Ola Nordmann."""
    return {
        "kari": Person("Kari", "Nordmann", date(1985, 5, 17)),
        "ola": Person("Ola", "Nordmann", date(1979, 11, 3)),
    }


@dataclass(frozen=True)
class SigningKey:
    """An RSA key and its kid (the RFC 7638 thumbprint)."""

    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(_thumbprint(_public_jwk(private)), private)

    def jwk(self) -> dict[str, Any]:
        return _public_jwk(self.private) | {"kid": self.kid, "use": "sig", "alg": "RS256"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _public_jwk(private: rsa.RSAPrivateKey) -> dict[str, Any]:
    return dict(RSAAlgorithm.to_jwk(private.public_key(), as_dict=True))


def _thumbprint(jwk: Mapping[str, Any]) -> str:
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class _Grant:
    """What an authorization code stands for, until it is redeemed (once)."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    person: Person
    acr: str
    auth_time: int
    expires_at: float


@dataclass
class OidcProviderState:
    """The provider's registered client, its persons, keys, issued codes and test switches."""

    client_id: str = "dsar-pipeline"
    client_secret: str = "emulator-secret"
    redirect_uris: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8787/identity/oidc/callback"])
    flavour: Flavour = "idura"
    issuer: str | None = None  # None: the base URL each request came to
    persons: dict[str, Person] = field(default_factory=demo_persons)
    next_person: str | None = None  # a key of persons or a national id
    forge: Forgery | None = None
    broken: dict[str, Breakage] = field(default_factory=dict)
    token_lifetime_s: int = 300
    code_lifetime_s: float = 60.0
    hits: Counter[str] = field(default_factory=Counter)
    keys: list[SigningKey] = field(default_factory=lambda: [SigningKey.generate()])
    codes: dict[str, _Grant] = field(default_factory=dict, repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def key(self) -> SigningKey:
        """The key that signs (the newest)."""
        return self.keys[-1]

    def rotate_key(self, *, keep_old: bool = True) -> SigningKey:
        """Sign with a new key from now on; the JWKS keeps publishing the old ones if ``keep_old``."""
        with self.lock:
            self.keys = [*self.keys, SigningKey.generate()] if keep_old else [SigningKey.generate()]
            return self.key

    def reset(self) -> None:
        """Clear switches, codes and counters (keeps persons, keys and client)."""
        with self.lock:
            self.next_person, self.forge, self.issuer = None, None, None
            self.broken.clear()
            self.codes.clear()
            self.hits.clear()

    def find_person(self, hint: str | None) -> Person | None:
        """The person a login_hint (key, national id, or Idura's ``:nin``) or ``next_person`` names."""
        wanted = (hint or self.next_person or "").removeprefix(":")
        if not wanted:
            return next(iter(self.persons.values()), None)
        by_id = {p.national_id: p for p in self.persons.values()}
        return self.persons.get(wanted) or by_id.get(wanted)

    def new_code(self, grant: _Grant) -> str:
        code = secrets.token_urlsafe(32)
        with self.lock:
            self.codes[code] = grant
        return code

    def redeem(self, code: str) -> _Grant | None:
        """The grant for ``code``, once: a second redemption, or an expired code, finds nothing."""
        with self.lock:
            grant = self.codes.pop(code, None)
        return grant if grant is not None and grant.expires_at > time.monotonic() else None

    def take_forge(self) -> Forgery | None:
        with self.lock:
            forge, self.forge = self.forge, None
            return forge

    def choose_acr(self, person: Person, requested: str | None) -> str:
        """The person's acr, else the first requested one this flavour knows, else its highest."""
        known = ACR_VALUES[self.flavour]
        asked = [a for a in (requested or "").split() if a in known]
        return person.acr or (asked[0] if asked else known[0])

    def id_token(self, grant: _Grant, issuer: str) -> str:
        """The id_token for a redeemed grant, spoiled as ``forge`` says (then forge is cleared)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": grant.client_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime_s,
            "nonce": grant.nonce,
            "auth_time": grant.auth_time,
        }
        claims |= _person_claims(self.flavour, grant.person, grant.acr)
        return self.sign(claims, self.take_forge())

    def sign(self, claims: dict[str, Any], forge: Forgery | None = None) -> str:
        """Sign ``claims`` with the current key, or forge them as asked."""
        claims = _forged_claims(claims, forge, self.flavour)
        key = self.key
        if forge == "alg_none":
            return _compact({"alg": "none", "typ": "JWT", "kid": key.kid}, claims, lambda _: b"")
        if forge == "hs256_public_key":
            pem = key.public_pem()
            return _compact(
                {"alg": "HS256", "typ": "JWT", "kid": key.kid},
                claims,
                lambda data: hmac.new(pem, data, hashlib.sha256).digest(),
            )
        if forge in ("other_key", "unknown_kid"):
            other = SigningKey.generate()
            kid = key.kid if forge == "other_key" else other.kid
            return jwt.encode(claims, other.private, algorithm="RS256", headers={"kid": kid})
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid})


def _forged_claims(claims: dict[str, Any], forge: Forgery | None, flavour: Flavour) -> dict[str, Any]:
    now = int(time.time())
    changes: dict[Forgery, dict[str, Any]] = {
        "expired": {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
        "future_iat": {"iat": now + 3600, "nbf": now, "exp": now + 7200},
        "wrong_issuer": {"iss": FOREIGN_ISSUER},
        "wrong_audience": {"aud": FOREIGN_AUDIENCE},
        "extra_audience": {"aud": [claims["aud"], FOREIGN_AUDIENCE]},
        "low_acr": {"nbid_acr" if flavour == "signicat" else "acr": ACR_VALUES[flavour][-1]},
        "wrong_nonce": {"nonce": secrets.token_urlsafe(32)},
    }
    return claims | changes.get(forge, {}) if forge else claims


def _compact(header: dict[str, Any], claims: dict[str, Any], mac: Callable[[bytes], bytes]) -> str:
    """A JWS in compact form with a hand-made signature (PyJWT refuses to make these forgeries)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(mac(signing_input.encode()))}"


def _person_claims(flavour: Flavour, person: Person, acr: str) -> dict[str, Any]:
    """The person's claims as each provider words them."""
    born = person.birthdate.isoformat()
    names = {"name": person.name, "given_name": person.given_name, "family_name": person.family_name}
    serial = f"9578-6000-4-{person.uid.int % 1_000_000:06d}"
    if flavour == "signicat":
        return names | {
            "sub": _b64(person.uid.bytes),
            "birthdate": born,
            "nin": person.national_id,
            "nin_type": "BIRTH",
            "nin_issuing_country": "NO",
            "idp_id": serial,
            "nbid_acr": acr,
        }
    if flavour == "idporten":
        return {"sub": _b64(person.uid.bytes), "pid": person.national_id, "acr": acr, "amr": ["BankID"]}
    return names | {
        "identityscheme": "nobankid-oidc",
        "nameidentifier": person.uid.hex,
        "sub": "{" + str(person.uid) + "}",
        "uniqueuserid": serial,
        "birthdate": born,
        "socialno": person.national_id,
        "country": "NO",
        "acr": acr,
        "amr": ["BankID"],
    }


# ---- endpoints -------------------------------------------------------------------------------------


def _issuer(request: Request, state: OidcProviderState) -> str:
    return state.issuer or str(request.base_url).rstrip("/")


def _broken(state: OidcProviderState, endpoint: str) -> Response | None:
    """The broken answer ``endpoint`` gives, if it is switched to one; counts the request."""
    with state.lock:
        state.hits[endpoint] += 1
        breakage = state.broken.get(endpoint)
    if breakage == "server_error":
        return JSONResponse({"error": "server_error"}, status_code=500)
    return malformed() if breakage == "garbage" else None


async def discovery(request: Request) -> Response:
    state: OidcProviderState = request.app.state.oidc
    if (answer := _broken(state, "discovery")) is not None:
        return answer
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "issuer": _issuer(request, state),
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "token_endpoint": f"{base}/oauth2/token",
            "jwks_uri": f"{base}/.well-known/jwks",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(SCOPES[state.flavour]),
            "acr_values_supported": list(ACR_VALUES[state.flavour]),
        }
    )


async def jwks(request: Request) -> Response:
    state: OidcProviderState = request.app.state.oidc
    if (answer := _broken(state, "jwks")) is not None:
        return answer
    with state.lock:
        return JSONResponse({"keys": [key.jwk() for key in state.keys]})


async def authorize(request: Request) -> Response:
    """Authenticate at once and redirect back with a code; errors go back as the spec says."""
    state: OidcProviderState = request.app.state.oidc
    with state.lock:
        state.hits["authorize"] += 1
    query = request.query_params
    redirect_uri = query.get("redirect_uri", "")
    if query.get("client_id") != state.client_id or redirect_uri not in state.redirect_uris:
        # Never redirect to an unregistered URI (RFC 6749 4.1.2.1): answer here instead.
        return JSONResponse({"error": "invalid_request", "error_description": "unknown client"}, 400)
    back = {"state": query["state"]} if "state" in query else {}
    problem = _authorize_problem(query)
    if problem:
        return _redirect(redirect_uri, {"error": "invalid_request", "error_description": problem} | back)
    person = state.find_person(query.get("login_hint"))
    if person is None:
        return _redirect(redirect_uri, {"error": "access_denied"} | back)
    grant = _Grant(
        client_id=state.client_id,
        redirect_uri=redirect_uri,
        code_challenge=query["code_challenge"],
        nonce=query["nonce"],
        person=person,
        acr=state.choose_acr(person, query.get("acr_values")),
        auth_time=int(time.time()),
        expires_at=time.monotonic() + state.code_lifetime_s,
    )
    return _redirect(redirect_uri, {"code": state.new_code(grant)} | back)


def _authorize_problem(query: Mapping[str, str]) -> str | None:
    """What is wrong with an authorization request, if anything."""
    if query.get("response_type") != "code":
        return "response_type must be code"
    if "openid" not in query.get("scope", "").split():
        return "scope must include openid"
    for name in ("state", "nonce", "code_challenge"):
        if not query.get(name):
            return f"{name} is required"
    if query.get("code_challenge_method") != "S256":
        return "code_challenge_method must be S256"
    return None


def _redirect(uri: str, params: Mapping[str, str]) -> Response:
    separator = "&" if urllib.parse.urlsplit(uri).query else "?"
    return RedirectResponse(uri + separator + urllib.parse.urlencode(params), status_code=302)


async def token(request: Request) -> Response:
    """Redeem a code: client auth (basic or post), once-only code, redirect_uri and PKCE checks."""
    state: OidcProviderState = request.app.state.oidc
    if (answer := _broken(state, "token")) is not None:
        return answer
    form = {
        k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace")).items()
    }
    client_id, secret = _client_credentials(request, form)
    if client_id != state.client_id or not hmac.compare_digest(secret.encode(), state.client_secret.encode()):
        return _oauth_error("invalid_client", 401, {"WWW-Authenticate": 'Basic realm="oauth2"'})
    if form.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type")
    grant = state.redeem(form.get("code", ""))
    if grant is None or grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
        return _oauth_error("invalid_grant")
    if not hmac.compare_digest(_s256(form.get("code_verifier", "")), grant.code_challenge):
        return _oauth_error("invalid_grant")
    tokens = {
        "access_token": secrets.token_urlsafe(32),
        "id_token": state.id_token(grant, _issuer(request, state)),
        "token_type": "Bearer",
        "expires_in": state.token_lifetime_s,
    }
    return JSONResponse(tokens, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str]:
    """client_secret_basic (form-encoded id and secret, RFC 6749 2.3.1) or client_secret_post."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except ValueError:
            return "", ""
        return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
    return form.get("client_id", ""), form.get("client_secret", "")


def _s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())


def _oauth_error(error: str, status: int = 400, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"error": error}, status_code=status, headers=dict(headers or {}))


def create_app(state: OidcProviderState) -> Starlette:
    """The provider as a Starlette app over ``state``."""
    routes = [
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/.well-known/jwks", jwks, methods=["GET"]),
        Route("/oauth2/authorize", authorize, methods=["GET"]),
        Route("/oauth2/token", token, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.oidc = state
    return app

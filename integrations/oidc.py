"""OpenID Connect relying party for identity verification with BankID (Idura, Signicat) and ID-porten.

A login is two halves, usually in different processes::

    client = OidcClient(OidcConfig(issuer, client_id, client_secret, redirect_uri, min_loa="high"))
    start = client.start_login()            # keep start.state, start.nonce, start.code_verifier
    ... the person follows start.url and comes back to redirect_uri?code=...&state=...
    code = code_from_callback(query_params, state=start.state)
    identity = client.finish_login(code=code, code_verifier=start.code_verifier, nonce=start.nonce)

``finish_login`` exchanges the code (client_secret_basic, PKCE) and validates the id_token as
OpenID Connect Core 3.1.3.7 asks: signature by a key of the provider's JWKS (pinned algorithms),
``iss``, ``aud``/``azp``, ``exp``/``iat``/``nbf``, ``nonce``, and a minimum level of assurance
read from ``acr`` (or Signicat's ``nbid_acr``). Every failure is an :class:`IdentityRejected`
whose ``reason`` is a short code; no message ever holds a token, a code, a national id or a name,
and no HTTP or JOSE exception is chained to it (its text or locals might).

Pure and typed: no Prefect, no ledger, no globals. One client caches discovery and JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import httpx
import jwt

__all__ = [
    "ACR_LOA",
    "NATIONAL_ID_CLAIMS",
    "IdentityRejected",
    "Loa",
    "LoginStart",
    "OidcClient",
    "OidcConfig",
    "RejectReason",
    "VerifiedIdentity",
    "code_from_callback",
    "identity_matches",
    "normal_name",
    "normal_national_id",
]

Loa = Literal["low", "substantial", "high"]
LOA_RANK: Mapping[Loa, int] = {"low": 1, "substantial": 2, "high": 3}

# acr values of each provider and the level of assurance they prove (eIDAS terms).
ACR_LOA: Mapping[str, Loa] = {
    # Idura (Criipto), Norwegian BankID: the plain value is the code device / app, i.e. high.
    "urn:grn:authn:no:bankid": "high",
    "urn:grn:authn:no:bankid:high": "high",
    "urn:grn:authn:no:bankid:substantial": "substantial",
    # ID-porten, directly or brokered by Signicat.
    "idporten-loa-high": "high",
    "idporten-loa-substantial": "substantial",
    "eidas-loa-substantial": "substantial",
    "idporten-loa-low": "low",
    "selfregistered-email": "low",
    # Signicat NBID (claim nbid_acr).
    "urn:bankid:bid;LOA=4": "high",
    "urn:bankid:bid;LOA=3": "substantial",
}
# Claims that may carry an acr value: the standard one, Signicat's NBID and ID-porten-broker ones.
ACR_CLAIMS = ("acr", "nbid_acr", "idporten_loa")
# The fødselsnummer / D-nummer claim of each provider.
NATIONAL_ID_CLAIMS: Mapping[str, str] = {"socialno": "idura", "nin": "signicat", "pid": "idporten"}
# Scopes asked for when the provider lists them: Signicat puts name/birthdate/nin behind them.
OPTIONAL_SCOPES = ("profile", "nin")

RejectReason = Literal[
    "discovery_failed",
    "discovery_issuer_mismatch",
    "jwks_failed",
    "token_exchange_failed",
    "login_failed",
    "state_mismatch",
    "malformed_token",
    "alg_not_allowed",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "missing_claim",
    "wrong_issuer",
    "wrong_audience",
    "azp_mismatch",
    "nonce_mismatch",
    "unknown_acr",
    "acr_too_low",
]
# What a message may echo from the other side: the registered OAuth/OIDC error codes and JWA names.
_ECHOABLE_WORDS = (
    "invalid_request invalid_client invalid_grant unauthorized_client unsupported_grant_type "
    "invalid_scope access_denied unsupported_response_type server_error temporarily_unavailable "
    "interaction_required login_required consent_required request_not_supported "
    "none HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"
)
_ECHOABLE = frozenset(_ECHOABLE_WORDS.split())


class IdentityRejected(Exception):
    """The identity could not be verified. ``reason`` is a stable code; the text holds no PII."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectReason = reason


@dataclass(frozen=True)
class OidcConfig:
    """One relying party at one provider. ``algorithms`` is the pinned allow-list."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    min_loa: Literal["substantial", "high"] = "high"
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_s: int = 60
    timeout_s: float = 10.0
    jwks_refetch_interval_s: float = 60.0  # the least time between two unknown-kid refetches
    metadata_ttl_s: float = 3600.0  # discovery and JWKS are fetched again after this


@dataclass(frozen=True)
class LoginStart:
    """An authorization request: send the person to ``url``; keep the rest to finish the login."""

    url: str = field(repr=False)  # may carry a login_hint (a national id)
    state: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)


@dataclass(frozen=True, repr=False)
class VerifiedIdentity:
    """Claims of a validated id_token. Hash ``national_id`` before storing it; never log it."""

    subject: str
    national_id: str | None
    name: str | None
    birthdate: str | None
    acr: str
    loa: Loa
    provider: str  # "idura" | "signicat" | "idporten" | "unknown"
    issuer: str
    auth_time: int | None = None

    def __repr__(self) -> str:
        has_id = self.national_id is not None
        return f"VerifiedIdentity(provider={self.provider!r}, loa={self.loa!r}, national_id={has_id})"

    __str__ = __repr__


# ---- helpers for the caller ------------------------------------------------------------------------


def code_from_callback(params: Mapping[str, str], *, state: str) -> str:
    """The authorization code of a redirect back from the provider, after checking its ``state``."""
    if not hmac.compare_digest(params.get("state", "").encode(), state.encode()):
        raise IdentityRejected("state_mismatch", "the callback's state is not the login's")
    if "error" in params:
        raise IdentityRejected("login_failed", f"the provider answered {_safe_code(params['error'])}")
    code = params.get("code", "")
    if not code:
        raise IdentityRejected("login_failed", "the callback carries no code")
    return code


def normal_national_id(value: str | None) -> str | None:
    """A fødselsnummer / D-nummer as digits only (what gets hashed), or None if it has none."""
    digits = "".join(ch for ch in value or "" if ch.isdigit())
    return digits or None


def normal_name(value: str | None) -> str:
    """A name for comparison: NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", value or "").casefold().split())


def identity_matches(
    identity: VerifiedIdentity,
    *,
    national_id_hash: str | None,
    name: str | None,
    birthdate: str | None,
    hash_fn: Callable[[str], str],
) -> bool:
    """True if the verified person is the one the systems hold.

    With a national id on record, only its keyed hash decides (``hash_fn`` over
    :func:`normal_national_id`); without one, the normalised name and the birth date must both
    be equal. A name alone never matches.
    """
    if national_id_hash is not None:
        national_id = normal_national_id(identity.national_id)
        if national_id is None:
            return False
        return hmac.compare_digest(hash_fn(national_id).encode(), national_id_hash.encode())
    held_name, held_birth = normal_name(name), (birthdate or "").strip()
    if not held_name or not held_birth:
        return False
    return normal_name(identity.name) == held_name and (identity.birthdate or "").strip() == held_birth


# ---- the client ------------------------------------------------------------------------------------


@dataclass
class _Cached:
    value: Any
    fetched_at: float


class OidcClient:
    """A confidential OIDC client (authorization code + PKCE) at one provider."""

    def __init__(
        self,
        config: OidcConfig,
        http: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=config.timeout_s, follow_redirects=False)
        self._clock = clock
        self._metadata: _Cached | None = None
        self._jwks: _Cached | None = None
        self._last_refetch: float | None = None

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- discovery and keys

    def discover(self) -> dict[str, Any]:
        """The provider's metadata (cached); its ``issuer`` must be exactly the configured one."""
        if self._metadata is None or self._stale(self._metadata):
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = self._get_json(url, "discovery_failed", "discovery")
            if metadata.get("issuer") != self.config.issuer:
                raise IdentityRejected("discovery_issuer_mismatch", "discovery names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(name), str) or not metadata[name].startswith("http"):
                    raise IdentityRejected("discovery_failed", f"discovery has no usable {name}")
            self._metadata = _Cached(metadata, self._clock())
        return dict(self._metadata.value)

    def _stale(self, cached: _Cached) -> bool:
        return self._clock() - cached.fetched_at >= self.config.metadata_ttl_s

    def _keys(self) -> tuple[dict[str, jwt.PyJWK], bool]:
        """The provider's signing keys by kid (cached), and whether they were fetched just now."""
        if self._jwks is not None and not self._stale(self._jwks):
            return self._jwks.value, False
        return self._fetch_keys(), True

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        body = self._get_json(self.discover()["jwks_uri"], "jwks_failed", "JWKS")
        try:
            jwk_set = jwt.PyJWKSet.from_dict(body)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):  # a JWK of the wrong shape
            raise IdentityRejected("jwks_failed", "the JWKS holds no usable key") from None
        keys = {k.key_id or "": k for k in jwk_set.keys if k.public_key_use in (None, "sig")}
        self._jwks = _Cached(keys, self._clock())
        return keys

    def _signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The key for ``kid``; an unknown kid refetches the JWKS once (rate-limited), for rotation."""
        keys, fresh = self._keys()
        if kid is None and len(keys) == 1:  # a lone key may go without a kid (RFC 7517 4.5)
            return next(iter(keys.values()))
        if kid not in keys and not fresh and self._may_refetch():
            self._last_refetch = self._clock()
            keys = self._fetch_keys()
        if kid is None or kid not in keys:
            raise IdentityRejected("unknown_kid", "the token's key is not in the provider's JWKS")
        return keys[kid]

    def _may_refetch(self) -> bool:
        last = self._last_refetch
        return last is None or self._clock() - last >= self.config.jwks_refetch_interval_s

    # -- the login

    def start_login(self, *, login_hint: str | None = None) -> LoginStart:
        """A fresh authorization request (code flow, PKCE S256) asking for at least ``min_loa``."""
        metadata = self.discover()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)  # 86 characters, within RFC 7636's 43..128
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": " ".join(self._scopes(metadata)),
            "state": state,
            "nonce": nonce,
            "code_challenge": _s256(code_verifier),
            "code_challenge_method": "S256",
        }
        acr_values = self._acr_values(metadata)
        if acr_values:
            params["acr_values"] = " ".join(acr_values)
        if login_hint:
            params["login_hint"] = login_hint
        url = metadata["authorization_endpoint"]
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        return LoginStart(url + separator + urllib.parse.urlencode(params), state, nonce, code_verifier)

    @staticmethod
    def _scopes(metadata: Mapping[str, Any]) -> list[str]:
        supported = metadata.get("scopes_supported") or []
        return ["openid", *(s for s in OPTIONAL_SCOPES if s in supported)]

    def _acr_values(self, metadata: Mapping[str, Any]) -> list[str]:
        """The provider's acr values at or above ``min_loa``, highest first; none if it lists none."""
        wanted = LOA_RANK[self.config.min_loa]
        supported = [a for a in metadata.get("acr_values_supported") or [] if isinstance(a, str)]
        good = [a for a in supported if a in ACR_LOA and LOA_RANK[ACR_LOA[a]] >= wanted]
        return sorted(good, key=lambda a: -LOA_RANK[ACR_LOA[a]])

    def finish_login(self, *, code: str, code_verifier: str, nonce: str) -> VerifiedIdentity:
        """Exchange ``code`` at the token endpoint, then validate the id_token it returns."""
        return self.validate_id_token(self._exchange(code, code_verifier), nonce=nonce)

    def _exchange(self, code: str, code_verifier: str) -> str:
        """The id_token for ``code`` (client_secret_basic, credentials form-encoded per RFC 6749 2.3.1)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": code_verifier,
        }
        auth = (_form_encode(self.config.client_id), _form_encode(self.config.client_secret))
        try:
            response = self._http.post(self.discover()["token_endpoint"], data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise IdentityRejected("token_exchange_failed", f"token endpoint: {type(exc).__name__}") from None
        body = _json_object(response)
        if body is None:
            detail = f"token endpoint answered {response.status_code} without a JSON object"
            raise IdentityRejected("token_exchange_failed", detail)
        if response.status_code != 200:
            detail = f"token endpoint answered {response.status_code} {_safe_code(body.get('error'))}"
            raise IdentityRejected("token_exchange_failed", detail)
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or str(body.get("token_type", "")).lower() != "bearer":
            raise IdentityRejected("token_exchange_failed", "token endpoint answered no id_token")
        return id_token

    # -- validation

    def validate_id_token(self, id_token: str, *, nonce: str) -> VerifiedIdentity:
        """The identity in ``id_token``, validated per OIDC Core 3.1.3.7, or IdentityRejected."""
        header = _header(id_token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            raise IdentityRejected("alg_not_allowed", f"algorithm {_safe_code(alg)} is not allowed")
        kid = header.get("kid")
        key = self._signing_key(kid if isinstance(kid, str) else None)
        claims = self._decode(id_token, key)
        self._check_azp(claims)
        claimed_nonce = claims.get("nonce")
        if not isinstance(claimed_nonce, str) or not hmac.compare_digest(
            claimed_nonce.encode(), nonce.encode()
        ):
            raise IdentityRejected("nonce_mismatch", "the token's nonce is not the login's")
        acr, loa = _loa(claims)
        if LOA_RANK[loa] < LOA_RANK[self.config.min_loa]:
            raise IdentityRejected("acr_too_low", f"level of assurance {loa} is below {self.config.min_loa}")
        return _identity(claims, acr, loa)

    def _decode(self, id_token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.client_id,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat"], "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            reason, detail = _jwt_failure(exc)
            raise IdentityRejected(reason, detail) from None
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise IdentityRejected("missing_claim", "the token has no subject")
        return claims

    def _check_azp(self, claims: Mapping[str, Any]) -> None:
        """``azp`` must be this client when present, and must be present with several audiences."""
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.config.client_id:
            raise IdentityRejected("azp_mismatch", "the token was issued to another party (azp)")

    def _get_json(self, url: str, reason: RejectReason, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise IdentityRejected(reason, f"{what} unreachable: {type(exc).__name__}") from None
        body = _json_object(response)
        if response.status_code != 200 or body is None:
            raise IdentityRejected(reason, f"{what} answered {response.status_code} without a JSON object")
        return body


# ---- module helpers --------------------------------------------------------------------------------


def _s256(code_verifier: str) -> str:
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _form_encode(value: str) -> str:
    return urllib.parse.quote_plus(value, safe="")


def _safe_code(value: object) -> str:
    """A provider's error code or an alg name, if it is a registered one (never echo arbitrary text)."""
    if not isinstance(value, str):
        return "(none)"
    return value if value in _ECHOABLE else "(other)"


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _header(id_token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise IdentityRejected("malformed_token", "the id_token is not a JWS") from None
    return header


_JWT_FAILURES: tuple[tuple[type[jwt.PyJWTError], RejectReason, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is issued in the future or not yet valid"),
    (jwt.InvalidIssuerError, "wrong_issuer", "the token's issuer is not the provider"),
    (jwt.InvalidAudienceError, "wrong_audience", "the token is not for this client"),
    (jwt.MissingRequiredClaimError, "missing_claim", "the token lacks a required claim"),
    (jwt.InvalidAlgorithmError, "alg_not_allowed", "the token's algorithm does not fit the key"),
    (jwt.InvalidSignatureError, "bad_signature", "the signature does not verify"),
)


def _jwt_failure(exc: jwt.PyJWTError) -> tuple[RejectReason, str]:
    """The reason for a PyJWT failure; PyJWT's own message is dropped (it may quote claims)."""
    for kind, reason, detail in _JWT_FAILURES:
        if isinstance(exc, kind):
            return reason, detail
    return "malformed_token", f"the token is invalid ({type(exc).__name__})"


def _loa(claims: Mapping[str, Any]) -> tuple[str, Loa]:
    """The acr value and level of assurance; the lowest if several acr claims are known."""
    values = [claims.get(c) for c in ACR_CLAIMS]
    known = [(acr, ACR_LOA[acr]) for acr in values if isinstance(acr, str) and acr in ACR_LOA]
    if not known:
        raise IdentityRejected("unknown_acr", "the token's acr is not a known level of assurance")
    return min(known, key=lambda pair: LOA_RANK[pair[1]])


def _identity(claims: Mapping[str, Any], acr: str, loa: Loa) -> VerifiedIdentity:
    claim = next((c for c in NATIONAL_ID_CLAIMS if isinstance(claims.get(c), str) and claims[c]), None)
    return VerifiedIdentity(
        subject=claims["sub"],
        national_id=claims[claim] if claim else None,
        name=_str_or_none(claims.get("name")) or _joined_name(claims),
        birthdate=_str_or_none(claims.get("birthdate")),
        acr=acr,
        loa=loa,
        provider=NATIONAL_ID_CLAIMS[claim] if claim else _provider_by_acr(acr),
        issuer=claims["iss"],
        auth_time=claims["auth_time"] if isinstance(claims.get("auth_time"), int) else None,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _joined_name(claims: Mapping[str, Any]) -> str | None:
    parts = [claims.get("given_name"), claims.get("family_name")]
    return " ".join(p for p in parts if isinstance(p, str) and p.strip()) or None


def _provider_by_acr(acr: str) -> str:
    if acr.startswith("urn:grn:"):
        return "idura"
    if acr.startswith("urn:bankid:"):
        return "signicat"
    return "idporten" if acr.startswith(("idporten-", "eidas-")) else "unknown"

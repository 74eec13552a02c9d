"""Token-based authentication for vendor APIs, as ``httpx.Auth`` flows.

Tokens are fetched when first needed, reused until shortly before they expire, and fetched
again once if the vendor answers 401 anyway (a token revoked or expired early): the request
is then replayed with the new token. A token endpoint that refuses the credentials is an
:class:`~integrations.errors.AuthError`; one that is down is retryable.

* :class:`ClientCredentialsAuth`: OAuth 2.0 client credentials (RFC 6749 §4.4), as
  PowerOffice Go v2 and 24SevenOffice use, sent as a Bearer token.
* :class:`TokenAuth`: any other scheme; a callable fetches ``(header value, lifetime)``,
  e.g. Tripletex's session token in Basic ``0:<token>``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Mapping

import httpx

from integrations.errors import AuthError, MalformedResponse, RetryableError
from integrations.tls import tls_context

__all__ = ["ClientCredentialsAuth", "TokenAuth"]

REFRESH_MARGIN_S = 30.0


class TokenAuth(httpx.Auth):
    """Sets ``Authorization`` from a cached token; fetches a new one when stale or refused."""

    def __init__(
        self, fetch: Callable[[], tuple[str, float]], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._header: str | None = None
        self._expires_at = 0.0
        self.fetches = 0  # how many tokens were obtained (observable in tests and metrics)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<token hidden>)"

    def _current(self, *, force: bool = False) -> str:
        with self._lock:
            if force or self._header is None or self._clock() >= self._expires_at - REFRESH_MARGIN_S:
                self._header, lifetime = self._fetch()
                self._expires_at = self._clock() + lifetime
                self.fetches += 1
            return self._header

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent_with = self._current()
        request.headers["Authorization"] = sent_with
        response = yield request
        if response.status_code == 401:
            with self._lock:
                stale = self._header == sent_with
            request.headers["Authorization"] = self._current(force=stale)
            yield request


class ClientCredentialsAuth(TokenAuth):
    """OAuth 2.0 client-credentials Bearer tokens from ``token_url``."""

    def __init__(
        self,
        *,
        system: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        extra_form: Mapping[str, str] | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10.0,
        basic: bool = False,
    ) -> None:
        self._system = system
        self._token_url = token_url
        self._form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
        self._form |= dict(extra_form or {})  # vendor-specific fields, e.g. 24SevenOffice's audience
        credentials = (client_id, client_secret)
        if not basic:  # client_secret_post; with basic=True client_secret_basic (RFC 6749 §2.3.1)
            self._form |= {"client_id": client_id, "client_secret": client_secret}
        self._client = httpx.Client(
            verify=tls_context(),
            transport=transport,
            timeout=timeout_s,
            headers=headers or {},
            auth=credentials if basic else None,
        )
        super().__init__(self._request_token)

    def _request_token(self) -> tuple[str, float]:
        try:
            response = self._client.post(self._token_url, data=self._form)
        except httpx.TransportError as exc:
            raise RetryableError("token endpoint unreachable", system=self._system) from exc
        if response.status_code in (400, 401, 403):
            raise AuthError(
                "client credentials refused", system=self._system, status_code=response.status_code
            )
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(
                "token endpoint failed", system=self._system, status_code=response.status_code
            )
        try:
            body = response.json()
            return f"Bearer {body['access_token']}", float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedResponse("token response unreadable", system=self._system) from exc

    def close(self) -> None:
        self._client.close()

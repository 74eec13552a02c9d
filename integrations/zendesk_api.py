"""The HTTP side of the Zendesk integration: its three ways to authenticate and its two ways to page.

* auth: an API token as Basic ``{email}/token:{token}``, a static OAuth token as Bearer, or OAuth
  client credentials (``POST /oauth/tokens`` with a JSON body), renewed when expired or refused;
* paging: user search pages by offset (``page``/``per_page``; ``next_page`` is read for its numbers,
  never followed, since it repeats the query), other lists by cursor (``page[size]``, ``meta.has_more``,
  ``links.next``).
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from integrations.auth import TokenAuth
from integrations.errors import AuthError, ConfigurationError, MalformedResponse, RetryableError
from integrations.http import VendorHttp
from integrations.tls import tls_context

__all__ = ["PAGE", "ZendeskApi", "make_auth"]

Json = dict[str, Any]
PAGE = 100  # Zendesk's maximum page size


def make_auth(
    system: str,
    base_url: str,
    credentials: dict[str, str | None],
    *,
    transport: httpx.BaseTransport | None,
    timeout_s: float,
) -> httpx.Auth:
    """The auth for whichever credentials are set (keys as in ``ZendeskConfig``)."""
    c = credentials
    if c.get("agent_email") and c.get("api_token"):
        basic = base64.b64encode(f"{c['agent_email']}/token:{c['api_token']}".encode()).decode()
        return HeaderAuth(f"Basic {basic}")
    if c.get("oauth_token"):
        return HeaderAuth(f"Bearer {c['oauth_token']}")
    if c.get("client_id") and c.get("client_secret"):
        body = {"grant_type": "client_credentials", "client_id": c["client_id"]}
        body |= {"client_secret": c["client_secret"], "scope": c.get("scope") or "read write"}
        return ClientCredentials(system, base_url, body, transport=transport, timeout_s=timeout_s)
    raise ConfigurationError(f"system {system!r}: Zendesk needs an API token, OAuth token or client")


class HeaderAuth(httpx.Auth):
    """A fixed ``Authorization`` header (API token or static OAuth token), masked in ``repr``."""

    def __init__(self, value: str) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the header to ``request``."""
        request.headers["Authorization"] = self._value
        yield request

    def __repr__(self) -> str:
        return "HeaderAuth(<masked>)"


class ClientCredentials(TokenAuth):
    """Zendesk OAuth client credentials: ``POST /oauth/tokens`` with a JSON body, used as Bearer."""

    def __init__(
        self,
        system: str,
        base_url: str,
        body: Json,
        *,
        transport: httpx.BaseTransport | None,
        timeout_s: float,
    ) -> None:
        self._system, self._body = system, body
        self._client = httpx.Client(
            base_url=base_url, transport=transport, timeout=timeout_s, verify=tls_context()
        )
        super().__init__(self._request_token)

    def _request_token(self) -> tuple[str, float]:
        """One token and its lifetime; Zendesk omits ``expires_in`` for tokens that do not expire."""
        try:
            response = self._client.post("/oauth/tokens", json=self._body)
        except httpx.TransportError as exc:
            raise RetryableError("token endpoint unreachable", system=self._system) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryableError("token endpoint failed", system=self._system, status_code=status)
        if status != 200:
            raise AuthError("client credentials refused", system=self._system, status_code=status)
        try:
            body = response.json()
            return f"Bearer {body['access_token']}", float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MalformedResponse("token response unreadable", system=self._system) from exc

    def close(self) -> None:
        """Release the token endpoint's connections."""
        self._client.close()


class ZendeskApi:
    """Zendesk's paging over a :class:`VendorHttp`; ``http`` is there for single requests."""

    def __init__(self, http: VendorHttp) -> None:
        self.http = http
        self.system = http.system

    def search_users(self, query: str) -> Iterator[Json]:
        """Every user ``GET /api/v2/users/search`` finds, page by page (offset paging only)."""
        params: dict[str, str | int] = {"query": query, "page": 1, "per_page": PAGE}
        while True:
            body = self.http.get_json("/api/v2/users/search", params=params)
            yield from self.objects(body, "users")
            nxt = self._next_page(body.get("next_page"), int(params["page"]))
            if nxt is None:
                return
            params |= nxt

    def cursor_pages(
        self, path: str, key: str, *, missing_ok: bool = False, ids: bool = True
    ) -> Iterator[Json]:
        """Every item of a cursor-paged list; a 404 is an empty list when ``missing_ok``."""
        params: dict[str, str | int] = {"page[size]": PAGE}
        expected = (200, 404) if missing_ok else (200,)
        seen: set[str] = set()
        while True:
            response = self.http.request("GET", path, params=params, expected=expected)
            if response.status_code == 404:
                return
            body = self.http.parse_object(response)
            yield from self.objects(body, key, ids=ids)
            after = self._after(body)
            if after is None:
                return
            if after in seen:
                raise self.malformed("paging cursor repeats")
            seen.add(after)
            params = {"page[size]": PAGE, "page[after]": after}

    def objects(self, body: Json, key: str, *, ids: bool = True) -> list[Json]:
        """``body[key]`` as a list of objects (with integer ids if ``ids``), or MalformedResponse."""
        items = body.get(key)
        shaped = _has_id if ids else (lambda item: isinstance(item, dict))
        if not isinstance(items, list) or not all(shaped(item) for item in items):
            raise self.malformed(f"'{key}' is not a list of objects")
        return items

    def malformed(self, what: str) -> MalformedResponse:
        """A MalformedResponse; ``what`` must not hold personal data."""
        return MalformedResponse(f"{self.system}: {what}", system=self.system)

    def _next_page(self, url: object, page: int) -> dict[str, int] | None:
        """``page`` and ``per_page`` from a ``next_page`` URL, which must move forward."""
        if url in (None, ""):
            return None
        query = parse_qs(urlsplit(str(url)).query)
        try:
            nxt = {"page": int(query["page"][0]), "per_page": int(query.get("per_page", [PAGE])[0])}
        except (KeyError, ValueError) as exc:
            raise self.malformed("next_page without a page number") from exc
        if nxt["page"] <= page:
            raise self.malformed("next_page does not advance")
        return nxt

    def _after(self, body: Json) -> str | None:
        """The next cursor if ``meta.has_more``: ``page[after]`` of ``links.next``, else ``after_cursor``."""
        meta, links = body.get("meta"), body.get("links")
        if not isinstance(meta, dict):
            raise self.malformed("cursor page without meta")
        if not meta.get("has_more"):
            return None
        nxt = links.get("next") if isinstance(links, dict) else None
        after = parse_qs(urlsplit(str(nxt or "")).query).get("page[after]", [meta.get("after_cursor")])[0]
        if not isinstance(after, str) or not after:
            raise self.malformed("has_more without a cursor")
        return after


def _has_id(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), int) and not isinstance(item["id"], bool)

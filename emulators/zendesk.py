"""A local Zendesk Support API v2 for tests and the demo (evidence levels as in vendor-apis.md §2).

Speaks the real paths (``.json`` suffix optional) **[SPEC]**, API-token Basic auth
``{email}/token:{token}`` and OAuth Bearer **[DOC]**, OAuth client credentials at
``POST /oauth/tokens`` with a JSON body **[DOC]** (tokens from a :class:`TokenStore`, so they
expire), offset paging for user search (``next_page``, ``previous_page``, ``count``) **[SPEC/CLIENT]**
and cursor paging elsewhere (``page[size]``, ``meta.has_more``, ``links.next``) **[DOC]**, error
bodies ``{"error": "RecordNotFound", "description": "Not found"}`` **[SPEC]**, 401
``{"error": "Couldn't authenticate you"}`` **[3P]**, and 429 with ``Retry-After`` (whole seconds),
``X-Rate-Limit`` and ``X-Rate-Limit-Remaining`` **[DOC]** and a ``text/plain`` body **[3P]**.
The 500 body and the expired-token body are **[GUESS]**.

Rectification and restriction **[SPEC** zd_users.yml**]**: ``PUT /api/v2/users/{id}`` ``{"user":
{...}}`` (200 ``{"user"}``), ``POST /api/v2/users/{id}/identities`` ``{"identity": {"type",
"value"}}`` (201 ``{"identity"}``), ``PUT .../identities/{id}`` (``value``, ``verified``; 200
``{"identity"}``), ``PUT .../identities/{id}/make_primary`` (200 ``{"identities"}``); refusals are
422 ``RecordInvalid`` with ``details`` **[3P]**. User tags **[DOC** developer.zendesk.com tags**]**:
``GET`` (show), ``POST`` (set, 201), ``PUT`` (add), ``DELETE`` (remove, body ``{"tags"}``) on
``/api/v2/users/{id}/tags``, each answering ``{"tags": [...]}``. Unverified behaviour is switched on
:class:`~emulators.zendesk_state.ZendeskState` (see there). Page sizes are capped at
``state.page_size`` so clients must page.
"""

from __future__ import annotations

import base64
import binascii
import math
import mimetypes
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from emulators.faults import admin_routes, vendor_endpoint
from emulators.zendesk_state import Invalid, ZendeskState, seed_demo

__all__ = ["ZendeskState", "create_app", "seed_demo"]

Handler = Callable[[Request, ZendeskState], Awaitable[Response]]
MAX_PAGE = 100
BAD_AUTH = {"error": "Couldn't authenticate you"}
BAD_TOKEN = {  # Doorkeeper's wording [GUESS]
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed or invalid"
    " for other reasons.",
}


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "description": description}, status_code=status)


def _not_found() -> JSONResponse:
    return _error(404, "RecordNotFound", "Not found")


class Answers:
    """Zendesk's own answers to the emulator's faults."""

    def __init__(self, state: ZendeskState) -> None:
        self._state = state

    def rate_limited(self, retry_after_s: float) -> Response:
        """429 with whole-second ``Retry-After`` and Zendesk's rate-limit headers."""
        headers = {"Retry-After": str(math.ceil(retry_after_s)), "X-Rate-Limit": "700"}
        headers["X-Rate-Limit-Remaining"] = "0"
        if self._state.rate_limit_json:
            body = {"error": "TooManyRequests", "description": "Rate limit exceeded"}
            return JSONResponse(body, status_code=429, headers=headers)
        return PlainTextResponse("Too Many Requests", status_code=429, headers=headers)

    def server_error(self) -> Response:
        """500 in Zendesk's error shape [GUESS]."""
        return _error(500, "InternalServerError", "Something went wrong, please try again")

    def token_expired(self) -> Response:
        """401 for a Bearer token that expired [GUESS body]."""
        return JSONResponse(BAD_TOKEN, status_code=401)


# ---- auth -------------------------------------------------------------------------------------------


def _authorised(request: Request, state: ZendeskState) -> Response | None:
    """None if the request carries valid credentials, else Zendesk's 401."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        ok = value in state.oauth_tokens or state.tokens.valid(value)
        return None if ok else JSONResponse(BAD_TOKEN, status_code=401)
    expected = f"{state.agent_email}/token:{state.api_token}"
    try:
        given = base64.b64decode(value, validate=True).decode() if scheme.lower() == "basic" else ""
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    return None if given == expected else JSONResponse(BAD_AUTH, status_code=401)


async def oauth_tokens(request: Request) -> Response:
    """``POST /oauth/tokens`` with ``grant_type=client_credentials`` (JSON body)."""
    state: ZendeskState = request.app.state.zendesk
    try:
        body = await request.json()
        grant, client, secret = body["grant_type"], body["client_id"], body["client_secret"]
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    if grant != "client_credentials":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    if (client, secret) != (state.client_id, state.client_secret):
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    token, lifetime = state.tokens.issue()
    answer = {"access_token": token, "token_type": "bearer", "scope": body.get("scope", "read")}
    return JSONResponse(answer | {"expires_in": int(lifetime)})


# ---- paging -----------------------------------------------------------------------------------------


def _int(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    text = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not text.startswith("o:"):
        raise ValueError("bad cursor")
    return max(0, int(text[2:]))


def _listing(request: Request, state: ZendeskState, key: str, items: list[Any]) -> Response:
    """Cursor paging with ``page[size]``, else offset paging; 400 for bad paging parameters."""
    try:
        if "page[size]" in request.query_params:
            return _cursor_page(request, state, key, items)
        return _offset_page(request, state, key, items)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return _error(400, "InvalidPaginationParameter", "Invalid pagination parameters")


def _cursor_page(request: Request, state: ZendeskState, key: str, items: list[Any]) -> Response:
    size = _int(request, "page[size]", MAX_PAGE)
    if not 0 < size <= MAX_PAGE:
        return _error(400, "InvalidPaginationParameter", f"page[size] is limited to {MAX_PAGE}")
    start = _offset(request.query_params.get("page[after]"))
    end = start + min(size, state.page_size)
    more = end < len(items)
    here = str(request.url.remove_query_params(["page[after]", "page[before]"]))
    after, before = _cursor(end), _cursor(start)
    meta = {"has_more": more, "after_cursor": after, "before_cursor": before}
    links = {"prev": f"{here}&page[before]={before}", "next": f"{here}&page[after]={after}" if more else None}
    return JSONResponse({key: items[start:end], "meta": meta, "links": links})


def _offset_page(request: Request, state: ZendeskState, key: str, items: list[Any]) -> Response:
    page, per_page = _int(request, "page", 1), min(_int(request, "per_page", MAX_PAGE), MAX_PAGE)
    if page < 1 or per_page < 1 or page * per_page > 10_000:
        return _error(400, "InvalidPaginationParameter", "Offset pagination is limited to 10000 records")
    per_page = min(per_page, state.page_size)
    start = (page - 1) * per_page
    url = request.url.include_query_params(per_page=per_page)
    nxt = str(url.include_query_params(page=page + 1)) if start + per_page < len(items) else None
    prev = str(url.include_query_params(page=page - 1)) if page > 1 else None
    body = {key: items[start : start + per_page], "next_page": nxt, "previous_page": prev}
    return JSONResponse(body | {"count": len(items)})


# ---- vendor endpoints -------------------------------------------------------------------------------


def _uid(request: Request) -> int:
    return int(request.path_params["user_id"])


async def me(request: Request, state: ZendeskState) -> Response:
    """``GET /api/v2/users/me``."""
    with state.lock:
        return JSONResponse({"user": state.users[state.agent_id]})


async def search_users(request: Request, state: ZendeskState) -> Response:
    """``GET /api/v2/users/search?query=`` (offset paging only)."""
    query = request.query_params.get("query")
    if not query:
        return _error(400, "InvalidEndpoint", "query or external_id is required")
    if "page[size]" in request.query_params:
        return _error(400, "InvalidPaginationParameter", "cursor pagination is not supported here")
    return _offset_page(request, state, "users", state.search_users(query))


async def identities(request: Request, state: ZendeskState) -> Response:
    """``GET /api/v2/users/{user_id}/identities``."""
    with state.lock:
        found = state.identities.get(_uid(request)) if _uid(request) in state.users else None
        items = [dict(i) for i in found] if found is not None else None
    return _not_found() if items is None else _listing(request, state, "identities", items)


def _tickets(pick: Callable[[ZendeskState, int], list[dict[str, Any]]]) -> Handler:
    """``GET /api/v2/users/{user_id}/tickets/{requested,ccd}``."""

    async def handler(request: Request, state: ZendeskState) -> Response:
        if _uid(request) not in state.users:
            return _not_found()
        return _listing(request, state, "tickets", pick(state, _uid(request)))

    return handler


async def comments(request: Request, state: ZendeskState) -> Response:
    """``GET /api/v2/tickets/{ticket_id}/comments`` (``sort=-created_at`` reverses)."""
    with state.lock:
        found = state.comments.get(int(request.path_params["ticket_id"]))
        items = [dict(c) for c in found] if found is not None else None
    if items is None:
        return _not_found()
    descending = request.query_params.get("sort") == "-created_at"
    return _listing(request, state, "comments", items[::-1] if descending else items)


async def redact(request: Request, state: ZendeskState) -> Response:
    """``PUT /api/v2/tickets/{ticket_id}/comments/{comment_id}/redact`` with ``{"text": ...}``."""
    ticket_id = int(request.path_params["ticket_id"])
    try:
        text = (await request.json())["text"]
        if not isinstance(text, str):
            raise TypeError("text must be a string")
    except (ValueError, KeyError, TypeError):
        return _error(400, "InvalidValue", "text is required")
    with state.lock:
        ticket = state.tickets.get(ticket_id)
    if ticket is not None and ticket["status"] == "closed":
        return _error(422, "RecordInvalid", "Closed tickets cannot be redacted")
    comment = state.redact(ticket_id, int(request.path_params["comment_id"]), text)
    return _not_found() if comment is None else JSONResponse({"comment": comment})


async def upload(request: Request, state: ZendeskState) -> Response:
    """``POST /api/v2/uploads?filename=`` with the file's raw bytes: 201 ``{"upload": {"token", ...}}``.

    The attachment's ``content_type`` is guessed from the file name, as Zendesk does [GUESS].
    """
    filename = request.query_params.get("filename")
    if not filename:
        return _error(400, "InvalidValue", "filename is required")  # [GUESS]
    content = await request.body()
    guessed = mimetypes.guess_type(filename)[0]
    content_type = guessed or request.headers.get("content-type", "application/binary")
    return JSONResponse({"upload": state.upload(filename, content_type, content)}, status_code=201)


async def update_ticket(request: Request, state: ZendeskState) -> Response:
    """``PUT /api/v2/tickets/{ticket_id}`` with ``{"ticket": {"comment": {"body", "public", "uploads"}}}``.

    Only the comment is applied (other ticket fields are accepted and ignored); a PUT without a
    comment body is refused with 422 here, where Zendesk would update the other fields, and so is
    an unknown upload token [GUESS].
    """
    try:
        comment = (await request.json())["ticket"].get("comment")
        body, public, uploads = _comment_fields(comment)
    except (ValueError, KeyError, TypeError, AttributeError):
        return _error(400, "InvalidValue", "ticket is required")
    if body is None:
        return _error(422, "RecordInvalid", "comment body is required")
    try:
        ticket = state.comment_on(int(request.path_params["ticket_id"]), body, public=public, uploads=uploads)
    except KeyError:
        return _error(422, "RecordInvalid", "upload token is invalid")
    if ticket is None:
        return _not_found()
    audit = {"ticket_id": ticket["id"], "author_id": state.agent_id, "events": [{"type": "Comment"}]}
    return JSONResponse({"ticket": ticket, "audit": audit})


def _comment_fields(comment: Any) -> tuple[str | None, bool, list[str]]:
    """(body, public, upload tokens) of an Update Ticket comment; TypeError for the wrong shape."""
    if comment is None:
        return None, True, []
    body, public, uploads = comment.get("body"), comment.get("public", True), comment.get("uploads", [])
    if not isinstance(body, str | None) or not isinstance(public, bool):
        raise TypeError("comment body must be text and public a boolean")
    if not isinstance(uploads, list) or not all(isinstance(t, str) for t in uploads):
        raise TypeError("uploads must be a list of tokens")
    return (body or None), public, uploads


async def delete_user(request: Request, state: ZendeskState) -> Response:
    """``DELETE /api/v2/users/{user_id}``: soft delete, 200 with the user."""
    user = state.soft_delete(_uid(request))
    return _not_found() if user is None else JSONResponse({"user": user})


async def delete_deleted_user(request: Request, state: ZendeskState) -> Response:
    """``DELETE /api/v2/deleted_users/{user_id}``: permanent delete of a soft-deleted user."""
    if _uid(request) in state.users:
        return _error(400, "InvalidValue", "The user must be soft deleted first")
    user = state.permanent_delete(_uid(request))
    return _not_found() if user is None else JSONResponse({"deleted_user": user})


async def compliance_statuses(request: Request, state: ZendeskState) -> Response:
    """``GET /api/v2/users/{user_id}/compliance_deletion_statuses``; 404 for users never seen."""
    with state.lock:
        uid = _uid(request)
        known = uid in state.users or uid in state.deleted_users
        statuses = list(state.compliance.get(uid, []))
    wanted = request.query_params.get("application")
    statuses = [s for s in statuses if wanted in (None, s["application"])]
    return _listing(request, state, "compliance_deletion_statuses", statuses) if known else _not_found()


async def delete_ticket(request: Request, state: ZendeskState) -> Response:
    """``DELETE /api/v2/tickets/{ticket_id}``: 204, or 404 if it is not there."""
    gone = state.delete_ticket(int(request.path_params["ticket_id"]))
    return Response(status_code=204) if gone else _not_found()


def _invalid(exc: Invalid) -> JSONResponse:
    """422 ``RecordInvalid`` with the refused field in ``details`` [3P]."""
    field, _, _ = str(exc).partition(":")
    details = {field.lower(): [{"description": str(exc), "error": "InvalidValue"}]}
    body = {"error": "RecordInvalid", "description": "Record validation errors", "details": details}
    return JSONResponse(body, status_code=422)


async def _wrapped(request: Request, key: str) -> dict[str, Any] | None:
    """``body[key]`` as an object, or None if the body is not ``{key: {...}}``."""
    try:
        body = await request.json()
    except ValueError:
        return None
    inner = body.get(key) if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else None


def _iid(request: Request) -> int:
    return int(request.path_params["identity_id"])


async def update_user(request: Request, state: ZendeskState) -> Response:
    """``PUT /api/v2/users/{user_id}`` with ``{"user": {...}}``: 200 with the user."""
    changes = await _wrapped(request, "user")
    if changes is None:
        return _error(400, "InvalidValue", "user is required")
    try:
        user = state.update_user(_uid(request), changes)
    except Invalid as exc:
        return _invalid(exc)
    return _not_found() if user is None else JSONResponse({"user": user})


async def create_identity(request: Request, state: ZendeskState) -> Response:
    """``POST /api/v2/users/{user_id}/identities`` with ``{"identity": {"type", "value"}}``: 201."""
    given = await _wrapped(request, "identity")
    if given is None:
        return _error(400, "InvalidValue", "identity is required")
    try:
        identity = state.create_identity(_uid(request), given.get("type"), given.get("value"))
    except Invalid as exc:
        return _invalid(exc)
    return _not_found() if identity is None else JSONResponse({"identity": identity}, status_code=201)


async def update_identity(request: Request, state: ZendeskState) -> Response:
    """``PUT /api/v2/users/{user_id}/identities/{id}`` with ``{"identity": {"value"|"verified"}}``."""
    changes = await _wrapped(request, "identity")
    if changes is None:
        return _error(400, "InvalidValue", "identity is required")
    try:
        identity = state.update_identity(_uid(request), _iid(request), changes)
    except Invalid as exc:
        return _invalid(exc)
    return _not_found() if identity is None else JSONResponse({"identity": identity})


async def make_primary(request: Request, state: ZendeskState) -> Response:
    """``PUT /api/v2/users/{user_id}/identities/{id}/make_primary``: 200 with all the identities."""
    identities = state.make_primary(_uid(request), _iid(request))
    return _not_found() if identities is None else JSONResponse({"identities": identities})


def _user_tags(how: str, status: int = 200) -> Handler:
    """``GET`` (show), ``POST`` (set), ``PUT`` (add), ``DELETE`` (remove) ``/api/v2/users/{id}/tags``."""

    async def handler(request: Request, state: ZendeskState) -> Response:
        given: Any = None
        if how != "show":
            try:
                given = (await request.json())["tags"]
            except (ValueError, KeyError, TypeError):
                return _error(400, "InvalidValue", "tags is required")
        try:
            tags = state.user_tags(_uid(request), given, how=how)
        except Invalid as exc:
            return _invalid(exc)
        return _not_found() if tags is None else JSONResponse({"tags": tags}, status_code=status)

    return handler


# ---- the app ----------------------------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, Handler]] = [
    ("GET", "/api/v2/users/me", me),
    ("GET", "/api/v2/users/search", search_users),
    ("GET", "/api/v2/users/{user_id:int}/identities", identities),
    ("GET", "/api/v2/users/{user_id:int}/tickets/requested", _tickets(ZendeskState.requested)),
    ("GET", "/api/v2/users/{user_id:int}/tickets/ccd", _tickets(ZendeskState.ccd)),
    ("GET", "/api/v2/users/{user_id:int}/compliance_deletion_statuses", compliance_statuses),
    ("DELETE", "/api/v2/users/{user_id:int}", delete_user),
    ("PUT", "/api/v2/users/{user_id:int}", update_user),
    ("POST", "/api/v2/users/{user_id:int}/identities", create_identity),
    ("PUT", "/api/v2/users/{user_id:int}/identities/{identity_id:int}", update_identity),
    ("PUT", "/api/v2/users/{user_id:int}/identities/{identity_id:int}/make_primary", make_primary),
    ("GET", "/api/v2/users/{user_id:int}/tags", _user_tags("show")),
    ("POST", "/api/v2/users/{user_id:int}/tags", _user_tags("set", 201)),
    ("PUT", "/api/v2/users/{user_id:int}/tags", _user_tags("add")),
    ("DELETE", "/api/v2/users/{user_id:int}/tags", _user_tags("remove")),
    ("DELETE", "/api/v2/deleted_users/{user_id:int}", delete_deleted_user),
    ("GET", "/api/v2/tickets/{ticket_id:int}/comments", comments),
    ("PUT", "/api/v2/tickets/{ticket_id:int}/comments/{comment_id:int}/redact", redact),
    ("PUT", "/api/v2/tickets/{ticket_id:int}", update_ticket),
    ("POST", "/api/v2/uploads", upload),
    ("DELETE", "/api/v2/tickets/{ticket_id:int}", delete_ticket),
]


def _vendor(state: ZendeskState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Faults first (as the shared wrapper does), then auth, then the handler."""

    async def authed(request: Request) -> Response:
        refused = _authorised(request, state)
        return refused if refused is not None else await handler(request, state)

    return vendor_endpoint(state.faults, Answers(state), authed)


def create_app(state: ZendeskState) -> Starlette:
    """The emulator as a Starlette app over ``state``; every vendor path also answers with ``.json``."""
    routes = admin_routes(state.faults, snapshot=state.snapshot, reset=state.reset)
    routes.append(Route("/oauth/tokens", oauth_tokens, methods=["POST"]))
    for method, path, handler in ENDPOINTS:
        endpoint = _vendor(state, handler)
        routes += [Route(p, endpoint, methods=[method]) for p in (path, f"{path}.json")]
    app = Starlette(routes=routes)
    app.state.zendesk = state
    return app

"""A local 24SevenOffice REST "Public API" (v1) and its OAuth token endpoint, for tests and the demo.

Faithful to ``tests/vendor-specs/24so_rest.yaml`` (v0.33.1) **[SPEC]**: paths under ``/v1``;
``GET /customers`` answers a bare JSON array, ``limit`` at most 100 (default 25), no e-mail or
phone filter; ``GET|PATCH|DELETE /customers/{id}`` (DELETE -> 204); ``GET /salesorders`` with
``customerId``, ``limit`` and ``continuationToken``; ``PATCH /salesorders/{id}``; pages chained
by an RFC 8288 ``Link`` header (``first``/``prev``/``next``); ``X-Trace-Id`` on every answer;
error bodies in the spec's ``Error`` / ``ValidationError`` shapes.

Token: ``POST /oauth/token`` (really on ``login.24sevenoffice.com``), client credentials with
``audience`` and ``login_organization`` **[CLIENT rest24/client.go]**; its error bodies follow
Auth0 conventions **[GUESS]**. Configurable on the state because unverified: the ``page`` query
parameter in ``/customers`` links **[3P]**, the refusal of DELETE for a customer with invoices
(409) **[GUESS]**, and the 429 body and ``Retry-After`` **[unknown]**. A PATCH of an invoiced
order is refused with 403, as the spec documents for its attachments **[GUESS]**. ``limit`` is
capped at ``state.page_size`` (100 like the API; tests lower it). Admin paths:
``/__emulator/{faults,reset,state}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.faults import admin_routes, vendor_endpoint
from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE
from emulators.twentyfour_state import INVOICED, TwentyFourState, person_customer

__all__ = ["TwentyFourState", "create_app", "seed_demo"]

Handler = Callable[[Request], Awaitable[Response]]
MAX_LIMIT, DEFAULT_LIMIT = 100, 25
CUSTOMER_PATCHABLE = {"name", "person", "isSupplier", "organizationNumber", "address", "email", "phone"}


def error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The spec's ``Error`` body: ``{"error": {"name", "message"}, "trackingId"}``."""
    body = {"error": {"name": name, "message": message}, "trackingId": uuid.uuid4().hex}
    return JSONResponse(body, status_code=status, headers=_trace() | (headers or {}))


def _invalid(path: str, keyword: str) -> JSONResponse:
    """The spec's ``ValidationError`` body (400)."""
    payload = {"validationErrors": [{"path": path, "keyword": keyword}]}
    body = {"error": {"name": "ValidationError", "payload": payload}, "trackingId": uuid.uuid4().hex}
    return JSONResponse(body, status_code=400, headers=_trace())


class _Answers:
    """24SevenOffice's answers for each injected fault."""

    def __init__(self, state: TwentyFourState) -> None:
        self._state = state

    def rate_limited(self, retry_after_s: float) -> Response:
        headers = {"Retry-After": f"{retry_after_s:g}"} if self._state.retry_after_header else {}
        if self._state.rate_limit_body is not None:
            return JSONResponse(self._state.rate_limit_body, status_code=429, headers=_trace() | headers)
        return error(429, "TooManyRequestsError", "Too many requests", headers)

    def server_error(self) -> Response:
        return error(500, "InternalServerError", "Internal server error")

    def token_expired(self) -> Response:
        return error(401, "UnauthorizedError", "Missing or invalid bearer token")


def create_app(state: TwentyFourState) -> Starlette:
    """The Starlette app serving ``state`` under ``/v1``, the token endpoint and the admin paths."""
    answers = _Answers(state)

    def vendor(handler: Callable[[Request, TwentyFourState], Awaitable[Response]]) -> Handler:
        async def authorised(request: Request) -> Response:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not state.tokens.valid(token):
                return answers.token_expired()
            return await handler(request, state)

        return vendor_endpoint(state.faults, answers, authorised)

    async def token(request: Request) -> Response:
        return await _token(request, state)

    routes = [
        Route("/oauth/token", token, methods=["POST"]),
        Route("/v1/customers", vendor(_list_customers), methods=["GET"]),
        Route("/v1/customers/{id:int}", vendor(_get_customer), methods=["GET"]),
        Route("/v1/customers/{id:int}", vendor(_patch_customer), methods=["PATCH"]),
        Route("/v1/customers/{id:int}", vendor(_delete_customer), methods=["DELETE"]),
        Route("/v1/salesorders", vendor(_list_orders), methods=["GET"]),
        Route("/v1/salesorders/{id:int}", vendor(_get_order), methods=["GET"]),
        Route("/v1/salesorders/{id:int}", vendor(_patch_order), methods=["PATCH"]),
        *admin_routes(state.faults, snapshot=state.snapshot, reset=state.reset),
    ]
    return Starlette(routes=routes)


# ---- token ------------------------------------------------------------------------------------------


async def _token(request: Request, state: TwentyFourState) -> Response:
    """OAuth 2.0 client credentials (form-encoded), as the Go client sends them."""
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "Unsupported grant type")
    if (form.get("client_id"), form.get("client_secret")) != (state.client_id, state.client_secret):
        return _oauth_error(401, "access_denied", "Unauthorized")
    if form.get("audience") != state.audience or form.get("login_organization") != state.organization_id:
        return _oauth_error(403, "access_denied", "Client is not authorized to access this organization")
    access_token, lifetime = state.tokens.issue()
    body = {"access_token": access_token, "scope": "api.crm.customer:read api.crm.customer:write"}
    return JSONResponse(body | {"expires_in": int(lifetime), "token_type": "Bearer"})


def _oauth_error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


# ---- customers --------------------------------------------------------------------------------------


async def _list_customers(request: Request, state: TwentyFourState) -> Response:
    """``GET /customers``: a page of the bare array, the rest reachable through ``Link``."""
    limit = _limit(request)
    page = _positive(request.query_params.get(state.page_param, "1"))
    if limit is None or page is None:
        return _invalid("limit" if limit is None else state.page_param, "type")
    items, more = state.customer_page(page, min(limit, state.page_size))
    links = {"first": 1} | ({"prev": page - 1} if page > 1 else {}) | ({"next": page + 1} if more else {})
    header = ", ".join(
        f'<{request.url.include_query_params(**{state.page_param: n})}>; rel="{rel}"'
        for rel, n in links.items()
    )
    return JSONResponse(items, headers=_trace() | {"Link": header})


async def _get_customer(request: Request, state: TwentyFourState) -> Response:
    with state.lock:
        customer = state.customers.get(request.path_params["id"])
        return JSONResponse(customer, headers=_trace()) if customer else _not_found("Customer")


async def _patch_customer(request: Request, state: TwentyFourState) -> Response:
    """``PATCH /customers/{id}``: a JSON merge of the ``CustomerPatchRequest`` fields."""
    body = await _json_object(request)
    if body is None:
        return _invalid("", "type")
    unknown = sorted(set(body) - CUSTOMER_PATCHABLE)
    if unknown:
        return _invalid(unknown[0], "additionalProperties")
    updated = state.patch_customer(request.path_params["id"], body)
    return JSONResponse(updated, headers=_trace()) if updated else _not_found("Customer")


async def _delete_customer(request: Request, state: TwentyFourState) -> Response:
    """``DELETE /customers/{id}`` -> 204; refused while invoices exist (if so configured)."""
    customer_id = request.path_params["id"]
    with state.lock:
        if state.delete_refusal_status and state.invoiced(customer_id):
            return error(state.delete_refusal_status, "ConflictError", "Customer has transactions")
        if not state.delete_customer(customer_id):
            return _not_found("Customer")
    return Response(status_code=204, headers=_trace())


# ---- sales orders -----------------------------------------------------------------------------------


async def _list_orders(request: Request, state: TwentyFourState) -> Response:
    """``GET /salesorders``, optionally of one ``customerId``, paged with ``continuationToken``."""
    limit = _limit(request)
    offset = _offset(request.query_params.get("continuationToken"))
    if limit is None or offset is None:
        return _invalid("limit" if limit is None else "continuationToken", "type")
    size = min(limit, state.page_size)
    items, more = state.order_slice(request.query_params.get("customerId"), offset, size)
    first = request.url.remove_query_params("continuationToken")
    links = [f'<{first}>; rel="first"']
    if more:
        links.append(
            f'<{first.include_query_params(continuationToken=_token_for(offset + size))}>; rel="next"'
        )
    return JSONResponse(items, headers=_trace() | {"Link": ", ".join(links)})


async def _get_order(request: Request, state: TwentyFourState) -> Response:
    with state.lock:
        order = state.orders.get(request.path_params["id"])
        return JSONResponse(order, headers=_trace()) if order else _not_found("Sales order")


async def _patch_order(request: Request, state: TwentyFourState) -> Response:
    """``PATCH /salesorders/{id}``; an invoiced order can no longer change (403, as for attachments)."""
    body = await _json_object(request)
    if body is None:
        return _invalid("", "type")
    with state.lock:
        order = state.orders.get(request.path_params["id"])
        if order is None:
            return _not_found("Sales order")
        if order["status"] in INVOICED:
            return error(403, "ForbiddenError", "Order is already invoiced")
        return JSONResponse(state.patch_order(order["id"], body), headers=_trace())


# ---- helpers ----------------------------------------------------------------------------------------


def _trace() -> dict[str, str]:
    return {"X-Trace-Id": uuid.uuid4().hex}


def _not_found(what: str) -> JSONResponse:
    return error(404, "NotFoundError", f"{what} not found")


def _limit(request: Request) -> int | None:
    """``limit`` (default 25, at most 100), or None if invalid."""
    value = _positive(request.query_params.get("limit", str(DEFAULT_LIMIT)))
    return value if value is not None and value <= MAX_LIMIT else None


def _positive(raw: str) -> int | None:
    try:
        value = int(float(raw))
    except ValueError:
        return None
    return value if value >= 1 else None


def _token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int | None:
    """The offset an opaque ``continuationToken`` stands for (0 without one), or None if invalid."""
    if token is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        return int(text.removeprefix("offset:")) if text.startswith("offset:") else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# ---- demo data --------------------------------------------------------------------------------------


def seed_demo(state: TwentyFourState) -> None:
    """Kari with invoices, a draft order and a duplicate customer; the others with an invoice each."""
    kari = DEMO_SUBJECT
    main = state.add_customer(person_customer(kari, email=kari.email, phone="+47 912 34 567"))
    for number, status in ((10023, "Invoice"), (10057, "Invoice"), (10102, "AdvanceInvoice")):
        invoice = {"number": number, "date": "2025-04-01", "dueDate": "2025-04-15"}
        state.add_order(main, status, invoice=invoice)
    state.add_order(main, "Draft", memo="Ring før levering, bor i 3. etasje, ringeklokke «Nordmann».")
    duplicate = state.add_customer(person_customer(kari, email=None, phone="912 34 567"))
    state.add_order(duplicate, "Proposal", memo="Tilbud på Fjordlys Pluss, sendt på SMS.")
    for person in OTHER_PEOPLE:
        other = state.add_customer(person_customer(person, email=person.email, phone=person.phone))
        state.add_order(other, "Invoice", invoice={"number": 20000 + other, "date": "2025-05-02"})
    state.add_customer(DEMO_COMPANY)


DEMO_COMPANY = {
    "name": "Fjordlys Bygg AS",
    "isCompany": True,
    "organizationNumber": "912345678",
    "email": {"contact": "post@fjordlysbygg.no", "billing": None},
    "phone": "+47 22 33 44 55",
}

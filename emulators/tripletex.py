"""A local Tripletex API v2 for tests and the demo.

Faithful to the official OpenAPI 3.0.1 v2.72.00 (``tests/vendor-specs/tripletex_openapi.json``,
[SPEC]): paths under ``/v2``, the session token from ``PUT /token/session/:create`` sent as Basic
``<companyId>:<token>``, list envelopes ``{"fullResultSize", "from", "count", "versionDigest",
"values"}`` paged by ``from``/``count``, single answers as ``{"value": ...}``, required date ranges
on ``/invoice``, ``/order`` and ``/ledger/posting``, partial updates by ``PUT``, and the ``ApiError``
body (``status``, ``code``, ``message``, ``link``, ``developerMessage``, ``validationMessages``,
``requestId``); 429 with ``X-Rate-Limit-Limit/-Remaining/-Reset`` [DOC].

Assumed, switchable on :class:`~emulators.tripletex_state.TripletexState` ([GUESS]): case of the
``email`` filter, ``DELETE /customer/{id}`` refusing customers with bookkeeping records,
``Retry-After`` on 429, error codes for 403/429/409. Sessions expire after the state's
``session_lifetime_s`` rather than at ``expirationDate``. ``fields`` is accepted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.faults import admin_routes, vendor_endpoint
from emulators.tripletex_state import Obj, TripletexState, ref, seed_demo

__all__ = ["TripletexState", "create_app", "seed_demo"]

Handler = Callable[[Request, TripletexState], Awaitable[Response]]
DATE_RANGES = {"invoice": ("invoiceDate", "invoiceDateFrom", "invoiceDateTo")}
DATE_RANGES |= {"order": ("orderDate", "orderDateFrom", "orderDateTo")}
DATE_RANGES |= {"posting": ("date", "dateFrom", "dateTo")}


def error(status: int, code: int, message: str, *, field: str | None = None, **headers: str) -> JSONResponse:
    """A Tripletex ``ApiError`` body."""
    request_id = str(uuid.uuid4())
    validation = [{"field": field, "message": message, "path": None, "rootId": None}] if field else None
    body = {"status": status, "code": code, "message": message, "link": "https://tripletex.no/v2-docs/"}
    body |= {"developerMessage": None, "validationMessages": validation, "requestId": request_id}
    return JSONResponse(body, status_code=status, headers={"x-tlx-request-id": request_id, **headers})


class Answers:
    """Tripletex's own answers for the shared fault switches."""

    def __init__(self, state: TripletexState) -> None:
        self._state = state

    def rate_limited(self, retry_after_s: float) -> Response:
        seconds = f"{retry_after_s:g}"
        headers = {"X-Rate-Limit-Limit": "100", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": seconds}
        if self._state.send_retry_after:
            headers["Retry-After"] = seconds
        return error(429, 429, "Too many requests. Rate limit exceeded.", **headers)

    def server_error(self) -> Response:
        return error(500, 1000, "An internal error occurred.")

    def token_expired(self) -> Response:
        return error(401, 3000, "Unauthorized: the session token has expired.")


def _authorised(request: Request, state: TripletexState) -> bool:
    """Basic ``<companyId>:<sessionToken>`` with a session this emulator issued."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        company, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return scheme.lower() == "basic" and company.isdigit() and state.tokens.valid(token)


def _page(request: Request, state: TripletexState, values: list[Obj]) -> Response:
    """One page of a ``ListResponse``: ``from`` and ``count`` (capped by the state's page size)."""
    try:
        start = max(0, int(request.query_params.get("from", 0)))
        count = max(0, min(int(request.query_params.get("count", 1000)), state.page_size))
    except ValueError:
        return error(400, 4000, "Illegal value for from/count.")
    page = values[start : start + count]
    digest = uuid.uuid5(uuid.NAMESPACE_OID, repr([(v["id"], v["version"]) for v in values])).hex
    body = {"fullResultSize": len(values), "from": start, "count": len(page), "versionDigest": digest}
    return JSONResponse(body | {"values": page})


def _ids(raw: str | None) -> set[int]:
    """A comma-separated "List of IDs" filter."""
    return {int(part) for part in (raw or "").split(",") if part.strip().isdigit()}


async def create_session(request: Request, state: TripletexState) -> Response:
    """``PUT /v2/token/session/:create``: no auth header; the tokens travel in the query."""
    query = request.query_params
    for name in ("consumerToken", "employeeToken", "expirationDate"):
        if not query.get(name):
            return error(422, 18000, "Validering feilet. Kan ikke være null.", field=name)
    if (query["consumerToken"], query["employeeToken"]) != (state.consumer_token, state.employee_token):
        return error(403, 9000, "Forbidden: invalid consumer or employee token.")
    token, _ = state.tokens.issue()
    with state.lock:
        state.session_creates += 1
    value = {**ref("token/session", state.session_creates), "version": 0, "token": token}
    value |= {"consumerToken": ref("token/consumer", 1), "employeeToken": ref("token/employee", 1)}
    return JSONResponse({"value": value | {"expirationDate": query["expirationDate"], "encryptionKey": None}})


async def who_am_i(request: Request, state: TripletexState) -> Response:
    """``GET /v2/token/session/>whoAmI``."""
    return JSONResponse({"value": {"employeeId": 1, "companyId": 123456, "language": "no"}})


def _equals(name: str, wanted: str, ignore_case: bool) -> Callable[[Obj], bool]:
    """An "Equals" filter on one field, optionally ignoring case."""
    fold: Callable[[str], str] = str.lower if ignore_case else str
    return lambda record: fold(record.get(name) or "") == fold(wanted)


def _customer_tests(request: Request, state: TripletexState) -> list[Callable[[Obj], bool]]:
    """The ``GET /customer`` filters: id, email, invoiceEmail, phoneNumberMobile, isInactive."""
    query = request.query_params
    inactive = query.get("isInactive", "false").lower() == "true"
    tests: list[Callable[[Obj], bool]] = [lambda c: bool(c.get("isInactive")) == inactive]
    if ids := _ids(query.get("id")):
        tests.append(lambda c: c["id"] in ids)
    for name in ("email", "invoiceEmail", "phoneNumberMobile"):
        if (wanted := query.get(name)) is not None:
            tests.append(
                _equals(name, wanted, state.email_filter_ignores_case and name != "phoneNumberMobile")
            )
    return tests


async def search_customers(request: Request, state: TripletexState) -> Response:
    """``GET /v2/customer``; ``isInactive`` defaults to false, as the spec says."""
    return _page(request, state, state.select("customer", *_customer_tests(request, state)))


async def search_contacts(request: Request, state: TripletexState) -> Response:
    """``GET /v2/contact``: ``email`` is "Containing" (case-insensitive here), ``customerId`` a list."""
    query = request.query_params
    email = (query.get("email") or "").lower()
    customers = _ids(query.get("customerId"))
    tests = [lambda c: email in (c.get("email") or "").lower()]
    if customers:
        tests.append(lambda c: (c.get("customer") or {}).get("id") in customers)
    return _page(request, state, state.select("contact", *tests))


def _dated_search(kind: str) -> Handler:
    """``GET /v2/invoice``, ``/v2/order``, ``/v2/ledger/posting``: a date range is required."""
    date_field, start_name, end_name = DATE_RANGES[kind]

    async def search(request: Request, state: TripletexState) -> Response:
        query = request.query_params
        for name in (start_name, end_name):
            if not query.get(name):
                return error(422, 18000, "Validering feilet. Kan ikke være null.", field=name)
        start, end, customers = query[start_name], query[end_name], _ids(query.get("customerId"))
        tests = [lambda r: start <= r[date_field] < end]
        if customers:
            tests.append(lambda r: (r.get("customer") or {}).get("id") in customers)
        return _page(request, state, state.select(kind, *tests))

    return search


async def _body(request: Request) -> Obj | None:
    """The request body if it is a JSON object."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _merge(held: Obj, changes: Obj) -> Obj:
    """A partial update: nested objects merge, everything else is replaced; read-only keys stay."""
    out = dict(held)
    for key, value in changes.items():
        if key in ("id", "url", "changes", "version", "isCustomer", "displayName"):
            continue
        out[key] = (
            _merge(held[key], value) if isinstance(value, dict) and isinstance(held.get(key), dict) else value
        )
    return out


def _update(kind: str, read_only: tuple[str, ...] = ()) -> Handler:
    """``PUT /v2/customer/{id}`` and ``/v2/contact/{id}``: optimistic locking on ``version``."""

    async def update(request: Request, state: TripletexState) -> Response:
        ident, body = int(request.path_params["id"]), await _body(request)
        if body is None:
            return error(400, 4000, "Request body is not a JSON object.")
        with state.lock:
            held = state.records[kind].get(ident)
            if held is None:
                return error(404, 6000, "Object not found.")
            if body.get("version") not in (None, held["version"]):
                return error(409, 8000, "Object has been changed by another user (version).")
            changes = {k: v for k, v in body.items() if k not in read_only}
            state.records[kind][ident] = _merge(held, changes) | {"version": held["version"] + 1}
            return JSONResponse({"value": state.records[kind][ident]})

    return update


async def delete_customer(request: Request, state: TripletexState) -> Response:
    """``DELETE /v2/customer/{id}`` [BETA]: 204; refused while bookkeeping records reference it."""
    ident = int(request.path_params["id"])
    with state.lock:
        if ident not in state.records["customer"]:
            return error(404, 6000, "Object not found.")
        if state.delete_refuses_bookkept and any(state.owned_by(ident).values()):
            status = state.delete_refusal_status
            return error(
                status, 15000 if status == 422 else 7000, "The customer has postings and cannot be deleted."
            )
        del state.records["customer"][ident]
    return Response(status_code=204)


def create_app(state: TripletexState) -> Starlette:
    """The emulator as a Starlette app over ``state``; vendor paths live under ``/v2``."""
    answers = Answers(state)

    def vendor(handler: Handler, *, auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
        async def checked(request: Request) -> Response:
            if auth and not _authorised(request, state):
                return error(401, 3000, "Unauthorized: missing or invalid session token.")
            return await handler(request, state)

        return vendor_endpoint(state.faults, answers, checked)

    routes = [
        Route("/v2/token/session/:create", vendor(create_session, auth=False), methods=["PUT"]),
        Route("/v2/token/session/>whoAmI", vendor(who_am_i), methods=["GET"]),
        Route("/v2/customer", vendor(search_customers), methods=["GET"]),
        Route("/v2/customer/{id:int}", vendor(_update("customer")), methods=["PUT"]),
        Route("/v2/customer/{id:int}", vendor(delete_customer), methods=["DELETE"]),
        Route("/v2/contact", vendor(search_contacts), methods=["GET"]),
        Route("/v2/contact/{id:int}", vendor(_update("contact", ("isInactive",))), methods=["PUT"]),
        Route("/v2/invoice", vendor(_dated_search("invoice")), methods=["GET"]),
        Route("/v2/order", vendor(_dated_search("order")), methods=["GET"]),
        Route("/v2/ledger/posting", vendor(_dated_search("posting")), methods=["GET"]),
        *admin_routes(state.faults, snapshot=state.snapshot, reset=state.reset),
    ]
    return Starlette(routes=routes)

"""A local PowerOffice Go API v2 for tests and the demo (research: vendor-apis.md section 5).

Faithful, from PowerOffice's own v2 OpenAPI files as generated into a client [SPEC-derived]
and from three clients [CLIENT]:

* ``POST /OAuth/Token``: client credentials, ``Authorization: Basic base64(ApplicationKey:ClientKey)``
  and ``Ocp-Apim-Subscription-Key``; 400 ``invalid_client`` (RFC 6749) for unknown keys [SPEC].
* ``/v2/...``: Bearer token **and** ``Ocp-Apim-Subscription-Key`` on every call [CLIENT x3];
  ``GET /Customers``, ``GET /ContactPersons?contactIds=``, ``GET /OutgoingInvoices?customerNos=``
  answer bare JSON arrays of PascalCase DTOs, paged by ``PageNumber``/``PageSize`` [SPEC-derived];
  ``PATCH`` takes only RFC 6902 JSON Patch as ``application/json-patch+json`` [SPEC-derived];
  ``DELETE /Customers/{id}`` answers 409 when invoices refer to the customer, ``DELETE
  /ContactPersons/{contactId}/{id}`` 409 when an invoice names the person [SPEC-derived text];
  archiving (``IsArchived``) is refused while the customer has a ledger balance [SPEC-derived text].
* 429 from the API gateway: ``{"statusCode": 429, "message": "Rate limit is exceeded. Try again in
  N seconds."}`` [SPEC] with ``Retry-After`` [CLIENT, unconfirmed].

Assumed, and switchable on :class:`PowerOfficeState`: the DELETE success code (``delete_status``,
[GUESS] 204), how ResourceParameters bind (``page_param_prefix``, [GUESS] top level), the page size
clamp (``max_page_size``), the ProblemDetails fields and type URIs (ASP.NET Core defaults [GUESS]),
the gateway's missing/invalid subscription-key texts (Azure APIM defaults [3P]), an empty-bodied
401 with ``WWW-Authenticate`` for expired tokens [GUESS], and contact persons leaving with their
customer [GUESS]. Admin paths: ``POST /__emulator/faults``, ``POST /__emulator/reset``,
``GET /__emulator/state``.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.faults import admin_routes, vendor_endpoint
from emulators.poweroffice_state import JsonObject, Outcome, PatchError, PowerOfficeState, seed_demo

__all__ = ["PowerOfficeState", "create_app", "seed_demo"]

Handler = Callable[[Request, PowerOfficeState], Awaitable[Response]]
JSON_PATCH = "application/json-patch+json"
MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 20_000, 5_000
RFC9110 = "https://tools.ietf.org/html/rfc9110#section-"
TYPES = {400: "15.5.1", 401: "15.5.2", 403: "15.5.4", 404: "15.5.5", 409: "15.5.10", 415: "15.5.16"}
TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict"}
TITLES |= {415: "Unsupported Media Type", 500: "An error occurred while processing your request."}


# ---- vendor answers -------------------------------------------------------------------------------


def problem(status: int, detail: str | None = None) -> Response:
    """An RFC 7807 ProblemDetails body as ASP.NET Core writes it [GUESS on exact fields]."""
    body: JsonObject = {"type": RFC9110 + TYPES.get(status, "15.6.1"), "title": TITLES.get(status, "Error")}
    body |= {
        "status": status,
        "detail": detail,
        "traceId": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00",
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def gateway(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An Azure API Management answer: ``{"statusCode", "message"}``."""
    return JSONResponse({"statusCode": status, "message": message}, status_code=status, headers=headers)


class Answers:
    """PowerOffice's answers to the shared fault switches."""

    def rate_limited(self, retry_after_s: float) -> Response:
        seconds = max(1, math.ceil(retry_after_s))
        message = f"Rate limit is exceeded. Try again in {seconds} seconds."
        return gateway(429, message, {"Retry-After": f"{retry_after_s:g}"})

    def server_error(self) -> Response:
        return problem(500)

    def token_expired(self) -> Response:
        challenge = 'Bearer error="invalid_token", error_description="The token expired"'
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})


# ---- auth -----------------------------------------------------------------------------------------


def _subscription_refused(request: Request, state: PowerOfficeState) -> Response | None:
    """The gateway's 401 when the subscription key is missing or wrong [3P: APIM default texts]."""
    key = request.headers.get("Ocp-Apim-Subscription-Key") or request.query_params.get("subscription-key")
    if key is None:
        message = "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."  # noqa: E501
        return gateway(401, message)
    if not secrets.compare_digest(key, state.subscription_key):
        message = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."  # noqa: E501
        return gateway(401, message)
    return None


def _basic_pair(request: Request) -> tuple[str, str] | None:
    """``(ApplicationKey, ClientKey)`` from ``Authorization: Basic``."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


async def _form(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (no multipart parser needed)."""
    if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    return urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))


async def token(request: Request, state: PowerOfficeState) -> Response:
    """``POST /OAuth/Token``: client credentials in Basic auth, form ``grant_type``."""
    refused = _subscription_refused(request, state)
    if refused is not None:
        return refused
    form = await _form(request)
    if form.get("grant_type") != ["client_credentials"]:
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    if _basic_pair(request) != (state.application_key, state.client_key):
        detail = "Client integration not found. Please ensure the provided keys are matching the desired environment."  # noqa: E501
        return JSONResponse({"error": "invalid_client", "error_description": detail}, status_code=400)
    access_token, lifetime = state.tokens.issue()
    return JSONResponse({"access_token": access_token, "token_type": "bearer", "expires_in": int(lifetime)})


def _guarded(state: PowerOfficeState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Subscription key (gateway) first, then the Bearer token, then the handler."""

    async def endpoint(request: Request) -> Response:
        refused = _subscription_refused(request, state)
        if refused is not None:
            return refused
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not state.tokens.valid(bearer):
            return Answers().token_expired() if bearer else problem(401)
        return await handler(request, state)

    return endpoint


# ---- lists ----------------------------------------------------------------------------------------


def _paged(request: Request, state: PowerOfficeState, items: list[JsonObject]) -> Response:
    """One page of ``items`` as a bare array (``PageNumber`` from 1, ``PageSize`` clamped)."""
    prefix = state.page_param_prefix
    try:
        number = int(request.query_params.get(f"{prefix}PageNumber", "1"))
        size = int(request.query_params.get(f"{prefix}PageSize", str(DEFAULT_PAGE_SIZE)))
    except ValueError:
        return problem(400, "PageNumber and PageSize must be integers.")
    if number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        return problem(400, f"PageNumber must be >= 1 and PageSize between 1 and {MAX_PAGE_SIZE}.")
    size = min(size, state.max_page_size)
    return JSONResponse(items[(number - 1) * size : number * size])


def _int_set(request: Request, name: str) -> set[int] | None:
    """A comma-separated list of numbers (``customerNos``, ``contactIds``); ranges unsupported."""
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    return {int(part) for part in raw.split(",") if part.strip()}


def _shown(customer: JsonObject, state: PowerOfficeState) -> JsonObject:
    """Go answers ``NationalIdNumber`` as ``"hidden"`` without a special privilege [SPEC-derived]."""
    if customer.get("NationalIdNumber") and not state.national_id_privilege:
        customer["NationalIdNumber"] = "hidden"
    return customer


async def list_customers(request: Request, state: PowerOfficeState) -> Response:
    """``GET /v2/Customers``."""
    return _paged(request, state, [_shown(c, state) for c in state.list_customers()])


async def list_contact_persons(request: Request, state: PowerOfficeState) -> Response:
    """``GET /v2/ContactPersons?contactIds=``."""
    try:
        contact_ids = _int_set(request, "contactIds")
    except ValueError:
        return problem(400, "contactIds must be comma-separated numbers.")
    return _paged(request, state, state.list_contact_persons(contact_ids))


async def list_invoices(request: Request, state: PowerOfficeState) -> Response:
    """``GET /v2/OutgoingInvoices?customerNos=``."""
    try:
        customer_nos = _int_set(request, "customerNos")
    except ValueError:
        return problem(400, "customerNos must be comma-separated numbers.")
    return _paged(request, state, state.list_invoices(customer_nos))


# ---- single objects -------------------------------------------------------------------------------


def _deleted(outcome: Outcome, state: PowerOfficeState) -> Response:
    """Go's answer to a DELETE."""
    if outcome == "missing":
        return problem(404)
    if outcome == "in_use":
        return problem(409, "The resource is in use and cannot be deleted.")
    return Response(status_code=state.delete_status)


async def _patched(request: Request, apply: Callable[[Any], JsonObject | None]) -> Response:
    """Run a PATCH: 415 unless JSON Patch, 400 ProblemDetails if refused, 404 if unknown."""
    if request.headers.get("Content-Type", "").split(";")[0].strip() != JSON_PATCH:
        return problem(415)
    try:
        result = apply(await request.json())
    except ValueError as exc:  # PatchError included; also a body that is not JSON
        detail = str(exc) if isinstance(exc, PatchError) else "The JSON patch document could not be parsed."
        return problem(400, detail)
    return problem(404) if result is None else JSONResponse(result)


async def delete_customer(request: Request, state: PowerOfficeState) -> Response:
    """``DELETE /v2/Customers/{id}``."""
    return _deleted(state.delete_customer(request.path_params["id"]), state)


async def patch_customer(request: Request, state: PowerOfficeState) -> Response:
    """``PATCH /v2/Customers/{id}`` (JSON Patch)."""
    return await _patched(request, lambda ops: state.patch_customer(request.path_params["id"], ops))


async def get_customer(request: Request, state: PowerOfficeState) -> Response:
    """``GET /v2/Customers/{id}``."""
    found = [c for c in state.list_customers() if c["Id"] == request.path_params["id"]]
    return JSONResponse(_shown(found[0], state)) if found else problem(404)


async def delete_contact_person(request: Request, state: PowerOfficeState) -> Response:
    """``DELETE /v2/ContactPersons/{contactId}/{id}``."""
    params = request.path_params
    return _deleted(state.delete_contact_person(params["contact_id"], params["id"]), state)


async def patch_contact_person(request: Request, state: PowerOfficeState) -> Response:
    """``PATCH /v2/ContactPersons/{contactId}/{id}`` (JSON Patch)."""
    params = request.path_params
    return await _patched(
        request, lambda ops: state.patch_contact_person(params["contact_id"], params["id"], ops)
    )


# ---- the app --------------------------------------------------------------------------------------

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("/v2/Customers", "GET", list_customers),
    ("/v2/Customers/{id:int}", "GET", get_customer),
    ("/v2/Customers/{id:int}", "PATCH", patch_customer),
    ("/v2/Customers/{id:int}", "DELETE", delete_customer),
    ("/v2/ContactPersons", "GET", list_contact_persons),
    ("/v2/ContactPersons/{contact_id:int}/{id:int}", "PATCH", patch_contact_person),
    ("/v2/ContactPersons/{contact_id:int}/{id:int}", "DELETE", delete_contact_person),
    ("/v2/OutgoingInvoices", "GET", list_invoices),
)


def create_app(state: PowerOfficeState) -> Starlette:
    """The emulator as a Starlette app over ``state``."""
    answers = Answers()

    async def token_endpoint(request: Request) -> Response:
        return await token(request, state)

    routes = [Route("/OAuth/Token", vendor_endpoint(state.faults, answers, token_endpoint), methods=["POST"])]
    routes += [
        Route(path, vendor_endpoint(state.faults, answers, _guarded(state, handler)), methods=[method])
        for path, method, handler in ROUTES
    ]
    routes += admin_routes(state.faults, snapshot=state.snapshot, reset=state.reset)
    return Starlette(routes=routes)

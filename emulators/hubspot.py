"""A local HubSpot CRM (v3 objects, v4 associations) for tests and the demo.

Speaks the real paths and shapes (``vendor-specs/hs_*.json``): bearer auth, contact search with
filter groups, cursor paging, v4 associations, batch reads with 207 partial answers, GDPR delete
and the ``Error`` body (``status``, ``category``, ``correlationId``, ``message``).

Contact update ``PATCH /crm/v3/objects/contacts/{id}`` (``idProperty=email`` too) **[SPEC]**:
non-existent properties (``state.contact_properties`` lists those the portal defines, the
restriction checkbox ``dsar_processing_restricted`` included) and read-only ones are refused with
400 ``VALIDATION_ERROR`` **[SPEC** description; error codes **GUESS]**, an e-mail another contact
holds with 409 ``CONFLICT`` **[GUESS]**. Communication preferences v3 **[DOC]**: ``GET
/communication-preferences/v3/definitions``, ``GET /communication-preferences/v3/status/email/{email}``
(every subscription type, ``NOT_SUBSCRIBED`` where nothing is recorded **[GUESS]**) and ``POST
/communication-preferences/v3/unsubscribe``, which answers 400 "... is already unsubscribed from
subscription ..." on a repeat **[3P]** and wants ``legalBasis`` while ``gdpr_enabled`` **[CLIENT]**.

Fault switches (``state.faults``, or ``POST /__emulator/faults``) make it answer 429 with
``Retry-After``, 500, or a garbage 200 body; ``search_lag`` keeps erased contacts in search
results, as HubSpot's eventually consistent search index does. Private admin paths:
``POST /__emulator/faults``, ``POST /__emulator/seed``, ``POST /__emulator/reset``,
``GET /__emulator/state``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Faults", "HubSpotState", "create_app"]

Props = Mapping[str, str | None]
Handler = Callable[[Request, "HubSpotState"], Awaitable[Response]]

TYPES = {"contacts": "contacts", "contact": "contacts", "0-1": "contacts"}
TYPES |= {"notes": "notes", "note": "notes", "0-46": "notes"}
TYPES |= {"emails": "emails", "email": "emails", "0-49": "emails"}
TYPES |= {"deals": "deals", "deal": "deals", "0-3": "deals"}
ASSOCIATION_TYPE_IDS = {"notes": 202, "emails": 198, "deals": 4}  # contact -> X, HUBSPOT_DEFINED
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "notes": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    "emails": ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": ("amount", "closedate", "createdate", "dealname", "dealstage", "hs_object_id", "pipeline"),
}
SEARCH_LIMIT_MAX, LIST_LIMIT_MAX, ASSOC_LIMIT_MAX, BATCH_MAX = 200, 100, 500, 100
READ_ONLY = frozenset({"hs_object_id", "createdate", "lastmodifieddate"})
CONTACT_PROPERTIES = frozenset(
    {"email", "firstname", "lastname", "phone", "mobilephone", "company", "address", "city", "zip"}
    | {"hs_object_id", "createdate", "lastmodifieddate", "dsar_processing_restricted"}
)
LEGAL_BASES = frozenset(  # the v3 enum [CLIENT: HubSpot's generated clients]
    {"LEGITIMATE_INTEREST_PQL", "LEGITIMATE_INTEREST_CLIENT", "PERFORMANCE_OF_CONTRACT"}
    | {"CONSENT_WITH_NOTICE", "NON_GDPR", "PROCESS_AND_STORE", "LEGITIMATE_INTEREST_OTHER"}
)
SUBSCRIPTION_TYPES = (  # (id, name, description) of the demo portal's e-mail subscription types
    ("5001", "Nyhetsbrev", "Månedlig nyhetsbrev fra Fjordlys"),
    ("5002", "Produktoppdateringer", "Nyheter om moduler og priser"),
)


@dataclass
class Faults:
    """Switches for misbehaviour; counters count down per vendor request (-1 = forever)."""

    rate_limit_next: int = 0
    retry_after_s: float = 1
    server_error_next: int = 0
    malformed_next: int = 0
    search_lag: bool = False
    latency_ms: float = 0  # steady delay before every vendor answer (benchmarks)


@dataclass
class _Object:
    """One stored CRM object."""

    id: str
    properties: dict[str, str | None]
    created_at: str
    updated_at: str


@dataclass
class HubSpotState:
    """The emulator's in-memory portal: objects, contact associations, blocklist, faults."""

    token: str = "emulator-token"
    page_size: int = 2
    faults: Faults = field(default_factory=Faults)
    objects: dict[str, dict[str, _Object]] = field(default_factory=dict)
    associations: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    erased: dict[str, _Object] = field(default_factory=dict)
    blocklist: set[str] = field(default_factory=set)
    contact_properties: set[str] = field(default_factory=lambda: set(CONTACT_PROPERTIES))
    gdpr_enabled: bool = True  # unsubscribes must carry a legal basis
    subscriptions: dict[str, dict[str, str]] = field(default_factory=dict)  # email -> type id -> status
    request_count: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    next_id: int = field(default=1001, init=False)

    def __post_init__(self) -> None:
        for kind in ("contacts", "notes", "emails", "deals"):
            self.objects.setdefault(kind, {})

    def add_object(self, kind: str, properties: Props) -> str:
        """Store a new object of ``kind`` (``notes``, ``deals``...) and return its id."""
        with self.lock:
            object_id, self.next_id = str(self.next_id), self.next_id + 1
            now = _now()
            props = {"hs_object_id": object_id, "createdate": now, "lastmodifieddate": now}
            props |= {"hs_createdate": now, "hs_lastmodifieddate": now} if kind != "contacts" else {}
            self.objects[TYPES[kind]][object_id] = _Object(object_id, {**props, **properties}, now, now)
            return object_id

    def associate(self, contact_id: str, kind: str, object_id: str) -> None:
        """Associate ``object_id`` with a contact (the id need not exist: a dangling association)."""
        with self.lock:
            ids = self.associations.setdefault(contact_id, {}).setdefault(TYPES[kind], [])
            if object_id not in ids:
                ids.append(object_id)

    def add_contact(
        self,
        properties: Props,
        notes: Sequence[Props] = (),
        emails: Sequence[Props] = (),
        deals: Sequence[Props] = (),
    ) -> str:
        """Store a contact with its associated notes, emails and deals; return the contact id."""
        with self.lock:
            contact_id = self.add_object("contacts", properties)
            for kind, items in (("notes", notes), ("emails", emails), ("deals", deals)):
                for props in items:
                    self.associate(contact_id, kind, self.add_object(kind, props))
            return contact_id

    def gdpr_delete(self, contact_id: str) -> bool:
        """Remove a contact and its associated objects; False if there was no such contact."""
        with self.lock:
            contact = self.objects["contacts"].pop(contact_id, None)
            if contact is None:
                return False
            self.erased[contact_id] = contact
            for kind, ids in self.associations.pop(contact_id, {}).items():
                for object_id in ids:
                    self.objects[kind].pop(object_id, None)
            return True

    def update_contact(self, contact_id: str, properties: Mapping[str, str]) -> _Object | None:
        """Overwrite properties of a live contact; None if there is no such contact."""
        with self.lock:
            contact = self.objects["contacts"].get(contact_id)
            if contact is None:
                return None
            now = _now()
            contact.properties |= dict(properties) | {"lastmodifieddate": now}
            contact.updated_at = now
            return contact

    def set_subscription(self, email: str, subscription_id: str, status: str) -> None:
        """Record an address's status (``SUBSCRIBED``/``NOT_SUBSCRIBED``) in one subscription type."""
        with self.lock:
            self.subscriptions.setdefault(email.lower(), {})[subscription_id] = status

    def subscription_status(self, email: str) -> dict[str, str]:
        """Every subscription type's status for an address (``NOT_SUBSCRIBED`` unless recorded)."""
        with self.lock:
            held = self.subscriptions.get(email.lower(), {})
            return {type_id: held.get(type_id, "NOT_SUBSCRIBED") for type_id, _, _ in SUBSCRIPTION_TYPES}

    def find_by_email(self, email: str) -> _Object | None:
        """The live contact whose email matches case-insensitively, if any."""
        with self.lock:
            return next((c for c in self.objects["contacts"].values() if _same(c, "email", email)), None)

    def take_fault(self) -> str | None:
        """Count a vendor request and consume the next due fault, if any."""
        with self.lock:
            self.request_count += 1
            for name in ("rate_limit_next", "server_error_next", "malformed_next"):
                left = getattr(self.faults, name)
                if left != 0:
                    setattr(self.faults, name, left - 1 if left > 0 else left)
                    return name
            return None

    def set_faults(self, changes: Mapping[str, Any]) -> None:
        """Update fault switches from a mapping; unknown names raise KeyError."""
        known = {f.name for f in fields(Faults)}
        with self.lock:
            for name, value in changes.items():
                if name not in known:
                    raise KeyError(name)
                setattr(self.faults, name, value)

    def reset(self) -> None:
        """Forget all objects, associations, faults and counters (keeps token and page size)."""
        with self.lock:
            for store in self.objects.values():
                store.clear()
            self.associations.clear()
            self.erased.clear()
            self.blocklist.clear()
            self.subscriptions.clear()
            self.contact_properties = set(CONTACT_PROPERTIES)
            self.gdpr_enabled = True
            self.faults = Faults()
            self.request_count = 0

    def snapshot(self) -> dict[str, Any]:
        """Counts, blocklist, faults and request count, for ``GET /__emulator/state``."""
        with self.lock:
            return {
                "counts": {kind: len(store) for kind, store in self.objects.items()},
                "blocklist": sorted(self.blocklist),
                "faults": asdict(self.faults),
                "request_count": self.request_count,
            }


# ---- helpers ---------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _same(obj: _Object, prop: str, value: object) -> bool:
    """Case-insensitive equality of a property with ``value``."""
    held = obj.properties.get(prop)
    return held is not None and str(held).lower() == str(value).lower()


def _error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    """A HubSpot ``Error`` body (plus the ``status: error`` real answers carry)."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    return JSONResponse(body | extra, status_code=status)


def _invalid(message: str) -> JSONResponse:
    return _error(400, "VALIDATION_ERROR", message)


def _not_found() -> JSONResponse:
    return _error(404, "OBJECT_NOT_FOUND", "resource not found")


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _decode_cursor(after: object) -> int:
    """Offset from an ``after`` cursor; ValueError if it is not one of ours."""
    if after in (None, "", "0"):  # "0" is how clients ask for the first page
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(str(after).encode()).decode()))
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("bad cursor") from exc


def _page(
    items: Sequence[Any], after: object, limit: int, page_size: int
) -> tuple[Sequence[Any], dict[str, Any]]:
    """Slice one page and build ``paging`` (``{}`` on the last page)."""
    start = _decode_cursor(after)
    end = start + max(1, min(limit, page_size))
    if end >= len(items):
        return items[start:], {}
    cursor = _encode_cursor(end)
    return items[start:end], {"paging": {"next": {"after": cursor, "link": f"?after={cursor}"}}}


def _public(obj: _Object, kind: str, requested: Iterable[str]) -> dict[str, Any]:
    """A ``SimplePublicObject`` with the requested (or default) properties."""
    names = list(requested) or list(DEFAULT_PROPERTIES[kind])
    return {
        "id": obj.id,
        "properties": {name: obj.properties.get(name) for name in names},
        "createdAt": obj.created_at,
        "updatedAt": obj.updated_at,
        "archived": False,
    }


def _csv_params(request: Request, name: str) -> list[str]:
    """A list query parameter given either repeated or comma-separated."""
    return [v for raw in request.query_params.getlist(name) for v in raw.split(",") if v]


def _int_param(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


async def _json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; ValueError otherwise."""
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


# ---- filter-group search ---------------------------------------------------------------------------


def _matches(obj: _Object, flt: Mapping[str, Any]) -> bool:
    """One search filter; raises ValueError for operators the emulator does not know."""
    prop, op = str(flt.get("propertyName", "")), str(flt.get("operator", "EQ"))
    held = obj.properties.get(prop)
    values = [str(v).lower() for v in flt.get("values") or []]
    if op == "EQ":
        return _same(obj, prop, flt.get("value"))
    if op == "NEQ":
        return not _same(obj, prop, flt.get("value"))
    if op in ("IN", "NOT_IN"):
        return (held is not None and held.lower() in values) == (op == "IN")
    if op in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        return (held not in (None, "")) == (op == "HAS_PROPERTY")
    if op == "CONTAINS_TOKEN":
        return held is not None and str(flt.get("value", "")).lower().strip("*") in held.lower()
    raise ValueError(f"operator {op} is not supported by the emulator")


def _search(state: HubSpotState, groups: Sequence[Mapping[str, Any]]) -> list[_Object]:
    """Contacts matching any group (filters within a group AND), ordered by id."""
    with state.lock:
        pool = list(state.objects["contacts"].values())
        pool += list(state.erased.values()) if state.faults.search_lag else []
    hits = [c for c in pool if not groups or any(all(_matches(c, f) for f in g["filters"]) for g in groups)]
    return sorted(hits, key=lambda c: int(c.id))


# ---- vendor endpoints ------------------------------------------------------------------------------


async def search_contacts(request: Request, state: HubSpotState) -> Response:
    """``POST /crm/v3/objects/contacts/search``."""
    try:
        body = await _json_body(request)
        limit, groups = int(body.get("limit", 10)), body.get("filterGroups") or []
        if limit > SEARCH_LIMIT_MAX or len(groups) > 6:
            return _invalid(f"limit must be <= {SEARCH_LIMIT_MAX} and filterGroups <= 6")
        hits = _search(state, groups)
        page, paging = _page(hits, body.get("after"), limit, state.page_size)
    except (ValueError, TypeError, KeyError) as exc:
        return _invalid(f"Invalid input JSON: {exc}")
    results = [_public(c, "contacts", body.get("properties") or []) for c in page]
    return JSONResponse({"total": len(hits), "results": results} | paging)


async def list_contacts(request: Request, state: HubSpotState) -> Response:
    """``GET /crm/v3/objects/contacts``."""
    try:
        limit = _int_param(request, "limit", 10)
        if limit > LIST_LIMIT_MAX:
            return _invalid(f"limit must be <= {LIST_LIMIT_MAX}")
        with state.lock:
            contacts = sorted(state.objects["contacts"].values(), key=lambda c: int(c.id))
        page, paging = _page(contacts, request.query_params.get("after"), limit, state.page_size)
    except ValueError as exc:
        return _invalid(str(exc))
    props = _csv_params(request, "properties")
    return JSONResponse({"results": [_public(c, "contacts", props) for c in page]} | paging)


async def get_contact(request: Request, state: HubSpotState) -> Response:
    """``GET /crm/v3/objects/contacts/{contactId}`` (``idProperty=email`` supported)."""
    key = request.path_params["contact_id"]
    with state.lock:
        by_email = request.query_params.get("idProperty") == "email"
        contact = state.find_by_email(key) if by_email else state.objects["contacts"].get(key)
        links = {
            kind: list(ids) for kind, ids in state.associations.get(contact.id if contact else "", {}).items()
        }
    if contact is None:
        return _not_found()
    body = _public(contact, "contacts", _csv_params(request, "properties"))
    wanted = [TYPES[t] for t in _csv_params(request, "associations") if t in TYPES]
    body["associations"] = {
        kind: {"results": [{"id": i, "type": f"contact_to_{kind[:-1]}"} for i in links.get(kind, [])]}
        for kind in wanted
        if links.get(kind)
    }
    return JSONResponse(body)


def _property_errors(state: HubSpotState, properties: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per property: does not exist, is read-only, or is not a string [codes GUESS]."""
    errors = []
    for name, value in properties.items():
        if name not in state.contact_properties:
            code, message = "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
        elif name in READ_ONLY:
            code, message = "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.'
        elif not isinstance(value, str):
            code, message = "INVALID_OPTION", f'Property "{name}" must be a string'
        else:
            continue
        errors.append({"isValid": False, "message": message, "error": code, "name": name})
    return errors


async def update_contact(request: Request, state: HubSpotState) -> Response:
    """``PATCH /crm/v3/objects/contacts/{contactId}``: 200 with the object; 400, 404 or 409 otherwise."""
    key = request.path_params["contact_id"]
    try:
        properties = (await _json_body(request))["properties"]
        if not isinstance(properties, dict):
            raise TypeError("properties must be an object")
    except (ValueError, KeyError, TypeError) as exc:
        return _invalid(f"Invalid input JSON: {exc}")
    if errors := _property_errors(state, properties):
        return _invalid(f"Property values were not valid: {errors}")
    with state.lock:
        by_email = request.query_params.get("idProperty") == "email"
        contact = state.find_by_email(key) if by_email else state.objects["contacts"].get(key)
        if contact is None:
            return _not_found()
        email = properties.get("email")
        taken = state.find_by_email(email) if email else None
        if taken is not None and taken.id != contact.id:
            return _error(409, "CONFLICT", f"Contact already exists. Existing ID: {taken.id}")
        updated = state.update_contact(contact.id, properties)
    assert updated is not None
    return JSONResponse(_public(updated, "contacts", [*DEFAULT_PROPERTIES["contacts"], *properties]))


def _subscription_status(type_id: str, status: str) -> dict[str, Any]:
    """A ``PublicSubscriptionStatus``."""
    name, description = next((n, d) for i, n, d in SUBSCRIPTION_TYPES if i == type_id)
    answer: dict[str, Any] = {"id": type_id, "name": name, "description": description, "status": status}
    return answer | {"sourceOfStatus": "SUBSCRIPTION_STATUS", "preferenceGroupName": None}


async def subscription_definitions(request: Request, state: HubSpotState) -> Response:
    """``GET /communication-preferences/v3/definitions``."""
    definitions = [
        {"id": i, "name": n, "description": d, "purpose": "Marketing", "communicationMethod": "Email"}
        | {"isActive": True, "isDefault": False, "isInternal": False}
        for i, n, d in SUBSCRIPTION_TYPES
    ]
    return JSONResponse({"subscriptionDefinitions": definitions})


async def subscription_status(request: Request, state: HubSpotState) -> Response:
    """``GET /communication-preferences/v3/status/email/{emailAddress}``."""
    email = request.path_params["email"]
    statuses = [_subscription_status(i, s) for i, s in state.subscription_status(email).items()]
    return JSONResponse({"recipient": email, "subscriptionStatuses": statuses})


async def unsubscribe(request: Request, state: HubSpotState) -> Response:
    """``POST /communication-preferences/v3/unsubscribe``: 200 with the new status, 400 if already out."""
    try:
        body = await _json_body(request)
        email, type_id = body["emailAddress"], str(body["subscriptionId"])
        if not isinstance(email, str) or "@" not in email:
            raise ValueError("emailAddress is not an e-mail address")
    except (ValueError, KeyError, TypeError) as exc:
        message = (
            "Cannot build PublicUpdateSubscriptionStatusRequest, some of required attributes are not set"
        )
        return _invalid(f"Invalid input JSON: {message} ({exc})")
    basis = body.get("legalBasis")
    if (state.gdpr_enabled and basis is None) or (basis is not None and basis not in LEGAL_BASES):
        return _invalid("A valid legalBasis is required for GDPR enabled portals")
    with state.lock:
        statuses = state.subscription_status(email)
        if type_id not in statuses:
            return _invalid(f"Subscription {type_id} does not exist")
        if statuses[type_id] != "SUBSCRIBED":
            return _invalid(f"{email} is already unsubscribed from subscription {type_id}")
        state.set_subscription(email, type_id, "NOT_SUBSCRIBED")
    answer = _subscription_status(type_id, "NOT_SUBSCRIBED")
    return JSONResponse(
        answer | {"legalBasis": basis, "legalBasisExplanation": body.get("legalBasisExplanation")}
    )


async def gdpr_delete(request: Request, state: HubSpotState) -> Response:
    """``POST /crm/v3/objects/contacts/gdpr-delete``: 204; unknown email is blocklisted; unknown id 404."""
    try:
        body = await _json_body(request)
        object_id = str(body["objectId"])
    except (ValueError, KeyError) as exc:
        return _invalid(f"Invalid input JSON: {exc}")
    if body.get("idProperty") == "email":
        contact = state.find_by_email(object_id)
        if contact is None:
            with state.lock:
                state.blocklist.add(object_id.lower())
            return Response(status_code=204)
        object_id = contact.id
    return Response(status_code=204) if state.gdpr_delete(object_id) else _not_found()


async def associations(request: Request, state: HubSpotState) -> Response:
    """``GET /crm/v4/objects/contacts/{id}/associations/{toType}``; unknown contact -> empty list."""
    from_kind = TYPES.get(request.path_params["object_type"])
    to_kind = TYPES.get(request.path_params["to_type"])
    if from_kind != "contacts" or to_kind not in ASSOCIATION_TYPE_IDS:
        return _invalid("the emulator only knows contact -> notes/emails/deals associations")
    try:
        limit = _int_param(request, "limit", ASSOC_LIMIT_MAX)
        if limit > ASSOC_LIMIT_MAX:
            return _invalid(f"limit must be <= {ASSOC_LIMIT_MAX}")
        with state.lock:
            ids = list(state.associations.get(request.path_params["object_id"], {}).get(to_kind, []))
        page, paging = _page(ids, request.query_params.get("after"), limit, state.page_size)
    except ValueError as exc:
        return _invalid(str(exc))
    kind = {"category": "HUBSPOT_DEFINED", "typeId": ASSOCIATION_TYPE_IDS[to_kind], "label": None}
    results = [{"toObjectId": int(i), "associationTypes": [kind]} for i in page]
    return JSONResponse({"results": results} | paging)


async def batch_read(request: Request, state: HubSpotState) -> Response:
    """``POST /crm/v3/objects/{type}/batch/read``: 200 COMPLETE, or 207 listing missing ids."""
    kind = TYPES.get(request.path_params["object_type"])
    try:
        body = await _json_body(request)
        ids = [str(item["id"]) for item in body.get("inputs", [])]
    except (ValueError, KeyError, TypeError) as exc:
        return _invalid(f"Invalid input JSON: {exc}")
    if kind is None or len(ids) > BATCH_MAX:
        return _invalid(f"unknown object type or more than {BATCH_MAX} inputs")
    with state.lock:
        found = [state.objects[kind][i] for i in ids if i in state.objects[kind]]
    missing = [i for i in ids if i not in {o.id for o in found}]
    now = _now()
    answer: dict[str, Any] = {"status": "COMPLETE", "startedAt": now, "completedAt": now, "requestedAt": now}
    answer["results"] = [_public(o, kind, body.get("properties") or []) for o in found]
    if not missing:
        return JSONResponse(answer)
    label = kind[:-1].upper()
    message = (
        f"Could not get some {label} objects, they may be deleted or not exist. Check that ids are valid."
    )
    error: dict[str, Any] = {"status": "error", "category": "OBJECT_NOT_FOUND", "message": message}
    error |= {"context": {"ids": missing}, "errors": [], "links": {}}
    return JSONResponse(answer | {"numErrors": 1, "errors": [error]}, status_code=207)


# ---- faults, auth and the app ----------------------------------------------------------------------


def _fault_response(fault: str, retry_after_s: float) -> Response:
    """The canned answer for a fault taken by :meth:`HubSpotState.take_fault`."""
    if fault == "malformed_next":
        return Response(b"<html><body>502 Bad Gatewa", status_code=200, media_type="application/json")
    if fault == "server_error_next":
        return _error(500, "INTERNAL_ERROR", "internal error")
    headers = {
        "Retry-After": f"{retry_after_s:g}",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        "X-HubSpot-RateLimit-Max": "100",
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Secondly": "10",
        "X-HubSpot-RateLimit-Secondly-Remaining": "0",
    }
    body = {"status": "error", "message": "You have reached your ten_secondly_rolling limit."}
    body |= {
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "TEN_SECONDLY_ROLLING",
    }
    return JSONResponse(body, status_code=429, headers=headers)


def _vendor(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a vendor endpoint with request counting, faults and bearer auth."""

    async def endpoint(request: Request) -> Response:
        state: HubSpotState = request.app.state.hubspot
        fault = state.take_fault()
        if state.faults.latency_ms > 0:  # awaited: other requests proceed meanwhile
            await asyncio.sleep(state.faults.latency_ms / 1000)
        if fault is not None:
            return _fault_response(fault, state.faults.retry_after_s)
        if request.headers.get("authorization") != f"Bearer {state.token}":
            message = "Authentication credentials not found."
            return _error(401, "INVALID_AUTHENTICATION", message)
        return await handler(request, state)

    return endpoint


async def admin_faults(request: Request) -> Response:
    """``POST /__emulator/faults``: update fault switches from a JSON object."""
    state: HubSpotState = request.app.state.hubspot
    try:
        state.set_faults(await _json_body(request))
    except (ValueError, KeyError) as exc:
        return _invalid(f"unknown fault switch or bad body: {exc}")
    return JSONResponse(asdict(state.faults))


async def admin_seed(request: Request) -> Response:
    """``POST /__emulator/seed``: ``{"contacts": [{"properties", "notes", "emails", "deals"}]}``."""
    state: HubSpotState = request.app.state.hubspot
    try:
        contacts = (await _json_body(request)).get("contacts", [])
        ids = [
            state.add_contact(c["properties"], c.get("notes", ()), c.get("emails", ()), c.get("deals", ()))
            for c in contacts
        ]
    except (ValueError, KeyError, TypeError) as exc:
        return _invalid(f"bad seed: {exc}")
    return JSONResponse({"ids": ids})


async def admin_reset(request: Request) -> Response:
    """``POST /__emulator/reset``: forget everything."""
    request.app.state.hubspot.reset()
    return Response(status_code=204)


async def admin_state(request: Request) -> Response:
    """``GET /__emulator/state``: counts, blocklist, faults and request count."""
    return JSONResponse(request.app.state.hubspot.snapshot())


def create_app(state: HubSpotState) -> Starlette:
    """The emulator as a Starlette app over ``state``."""
    routes = [
        Route("/__emulator/faults", admin_faults, methods=["POST"]),
        Route("/__emulator/seed", admin_seed, methods=["POST"]),
        Route("/__emulator/reset", admin_reset, methods=["POST"]),
        Route("/__emulator/state", admin_state, methods=["GET"]),
        Route("/crm/v3/objects/contacts/search", _vendor(search_contacts), methods=["POST"]),
        Route("/crm/v3/objects/contacts/gdpr-delete", _vendor(gdpr_delete), methods=["POST"]),
        Route("/crm/v3/objects/contacts", _vendor(list_contacts), methods=["GET"]),
        Route("/crm/v3/objects/contacts/{contact_id}", _vendor(get_contact), methods=["GET"]),
        Route("/crm/v3/objects/contacts/{contact_id}", _vendor(update_contact), methods=["PATCH"]),
        Route(
            "/communication-preferences/v3/definitions", _vendor(subscription_definitions), methods=["GET"]
        ),
        Route(
            "/communication-preferences/v3/status/email/{email}",
            _vendor(subscription_status),
            methods=["GET"],
        ),
        Route("/communication-preferences/v3/unsubscribe", _vendor(unsubscribe), methods=["POST"]),
        Route("/crm/v3/objects/{object_type}/batch/read", _vendor(batch_read), methods=["POST"]),
        Route(
            "/crm/v4/objects/{object_type}/{object_id}/associations/{to_type}",
            _vendor(associations),
            methods=["GET"],
        ),
    ]
    app = Starlette(routes=routes)
    app.state.hubspot = state
    return app

"""Tripletex API v2: customers and contact persons, and each customer's invoices, orders and postings.

* auth: ``PUT /token/session/:create`` (consumer + employee token) gives a session token, sent as
  Basic ``<companyId>:<token>``; a new session is created when Tripletex answers 401.
* lookup/export: customers by ``email`` / ``invoiceEmail`` (both ``isInactive`` values, since the
  filter defaults to active only) and contacts by ``email`` (a "Containing" filter), each result
  re-checked here. Phones have no usable filter (stored as typed; ``phoneNumber`` has none), so a
  subject with a phone (or any subject, with ``full_scan``) is matched by scanning all customers and
  contacts, comparing e-mails case-insensitively and phones in E.164.
  ``/invoice``, ``/order`` and ``/ledger/posting`` require a date range: ``history_start`` to a
  year ahead. Every list is paged with ``from``/``count`` to its end.
* erase: bookkeeping law (bokføringsloven) keeps invoices, orders and postings, so customers are
  anonymised by ``PUT`` (name, e-mails, phones, addresses cleared; set inactive) and reported as
  ``retained``; a customer with no such records is deleted (``DELETE`` [BETA]), falling back to
  anonymising if Tripletex refuses. Contacts are anonymised (the spec has no single-contact DELETE).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from integrations.auth import TokenAuth
from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.errors import AuthError, MalformedResponse, PermanentError
from integrations.http import DEFAULT_POLICY, HttpPolicy, Params, VendorHttp
from integrations.matching import Identifiers, identifiers

__all__ = ["Tripletex", "TripletexConfig", "from_config"]

PAGE = 1000  # the spec's default ``count``
SESSION_DAYS, SESSION_LIFETIME_S = 2, 86_400.0  # ask for two days, trust one
CUSTOMER_EMAILS, CUSTOMER_PHONES = ("email", "invoiceEmail"), ("phoneNumber", "phoneNumberMobile")
CONTACT_EMAILS, CONTACT_PHONES = ("email",), ("phoneNumberMobile", "phoneNumberWork")
# category -> (path, date-from parameter, date-to parameter): the spec marks the range required
RELATED = {
    "invoice": ("/invoice", "invoiceDateFrom", "invoiceDateTo"),
    "order": ("/order", "orderDateFrom", "orderDateTo"),
    "posting": ("/ledger/posting", "dateFrom", "dateTo"),
}
ADDRESSES = ("postalAddress", "physicalAddress", "deliveryAddress")
REFUSED = (400, 409, 422)

Obj = dict[str, Any]
FieldValue = str | int | float | bool | None


class TripletexConfig(BaseModel):
    """Configuration of one Tripletex company."""

    base_url: str = "https://tripletex.no/v2"
    consumer_token: SecretStr
    employee_token: SecretStr
    company_id: int = 0  # 0 = the employee's own company
    history_start: date = date(2000, 1, 1)  # earliest invoice, order and posting date searched
    full_scan: bool = False  # match e-mails client-side too, should the ``email`` filter heed case


class _RetryAfterFromReset(httpx.BaseTransport):
    """Gives a 429 without ``Retry-After`` one from ``X-Rate-Limit-Reset`` (seconds left)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        reset = response.headers.get("X-Rate-Limit-Reset")
        if response.status_code == 429 and reset and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = reset
        return response

    def close(self) -> None:
        self._inner.close()


class Tripletex:
    """A Tripletex company as a :class:`~integrations.base.System`."""

    kind = "tripletex"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        consumer_token: str,
        employee_token: str,
        company_id: int = 0,
        history_start: date = date(2000, 1, 1),
        full_scan: bool = False,
        policy: HttpPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._tokens = (consumer_token, employee_token)
        self._company_id = company_id
        self._history_start = history_start
        self._full_scan = full_scan
        wire = _RetryAfterFromReset(transport or httpx.HTTPTransport())
        common: dict[str, Any] = {"system": name, "base_url": base_url, "policy": policy, "transport": wire}
        self._sessions = VendorHttp(**common, sleep=sleep)
        self.auth = TokenAuth(self._create_session)
        self._http = VendorHttp(**common, auth=self.auth, sleep=sleep)

    def __repr__(self) -> str:
        return f"Tripletex({self.name!r})"

    def check(self) -> None:
        """Create a session and ask who it belongs to."""
        self._http.get_json("/token/session/>whoAmI")

    def lookup(self, subject: Subject) -> LookupResult:
        """Count matching customers and contacts, and the customers' invoices, orders and postings."""
        counts = {category: len(objs) for category, objs in self._everything(subject).items()}
        return LookupResult(system=self.name, counts=counts)

    def export(self, subject: Subject) -> Export:
        """Every matching customer and contact, and every invoice, order and posting of those customers."""
        records = [
            Record(category=category, record_id=str(obj["id"]), fields=_flatten(obj))
            for category, objs in self._everything(subject).items()
            for obj in objs
        ]
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Anonymise (or delete, if unused) matching customers and anonymise contacts; keep bookkeeping."""
        customers, contacts = self._customers(subject), self._contacts(subject)
        retained = dict.fromkeys(RELATED, 0)
        for customer in customers:
            held = {category: len(objs) for category, objs in self._related(customer["id"]).items()}
            retained = {category: retained[category] + held[category] for category in RELATED}
            if any(held.values()) or not self._delete_customer(customer["id"]):
                self._put(f"/customer/{customer['id']}", _anonymous_customer(customer))
        for contact in contacts:
            self._put(f"/contact/{contact['id']}", _anonymous_contact(contact))
        counts = {"customer": len(customers), "contact": len(contacts)}
        return ErasureOutcome(system=self.name, method="anonymise", counts=counts, retained=retained)

    def close(self) -> None:
        """Release connections."""
        self._http.close()
        self._sessions.close()

    # ---- session ----------------------------------------------------------------------------------

    def _create_session(self) -> tuple[str, float]:
        """A new session token as a Basic ``Authorization`` value, with the lifetime trusted."""
        expires = date.today() + timedelta(days=SESSION_DAYS)
        consumer, employee = self._tokens
        params = {"consumerToken": consumer, "employeeToken": employee, "expirationDate": expires.isoformat()}
        try:
            response = self._sessions.request("PUT", "/token/session/:create", params=params, retry=False)
        except PermanentError as exc:
            if isinstance(exc, MalformedResponse | AuthError) or exc.status_code not in REFUSED:
                raise
            raise AuthError(
                f"{self.name}: session tokens refused", system=self.name, status_code=exc.status_code
            ) from exc
        value = self._sessions.parse_object(response).get("value")
        token = value.get("token") if isinstance(value, dict) else None
        if not isinstance(token, str) or not token:
            raise self._malformed("session answer without token")
        basic = base64.b64encode(f"{self._company_id}:{token}".encode()).decode()
        return f"Basic {basic}", SESSION_LIFETIME_S

    # ---- finding ----------------------------------------------------------------------------------

    def _everything(self, subject: Subject) -> dict[str, list[Obj]]:
        """Matching customers and contacts, and every record related to those customers, by category."""
        found: dict[str, list[Obj]] = {
            "customer": self._customers(subject),
            "contact": self._contacts(subject),
        }
        found |= {category: [] for category in RELATED}
        for customer in found["customer"]:
            for category, objs in self._related(customer["id"]).items():
                found[category] += objs
        return found

    def _customers(self, subject: Subject) -> list[Obj]:
        """Active and inactive customers whose e-mail or phone is the subject's."""
        wanted = identifiers(subject, system=self.name, vendor="Tripletex")
        states = ({"isInactive": False}, {"isInactive": True})
        if wanted.phones or self._full_scan:
            candidates: Iterable[Obj] = (c for s in states for c in self._pages("/customer", s))
        else:
            queries = ({field: subject.email} | s for field in CUSTOMER_EMAILS for s in states)
            candidates = (c for query in queries for c in self._pages("/customer", query))
        return _unique(c for c in candidates if _holds(c, wanted, CUSTOMER_EMAILS, CUSTOMER_PHONES))

    def _contacts(self, subject: Subject) -> list[Obj]:
        """Contacts whose e-mail or phone is the subject's (the e-mail filter only narrows)."""
        wanted = identifiers(subject, system=self.name, vendor="Tripletex")
        query = {} if wanted.phones or self._full_scan else {"email": subject.email}
        candidates = self._pages("/contact", query)
        return _unique(c for c in candidates if _holds(c, wanted, CONTACT_EMAILS, CONTACT_PHONES))

    def _related(self, customer_id: int) -> dict[str, list[Obj]]:
        """The customer's invoices, orders and postings over the whole history searched."""
        start, end = self._history_start.isoformat(), (date.today() + timedelta(days=366)).isoformat()
        return {
            category: list(self._pages(path, {"customerId": customer_id, since: start, until: end}))
            for category, (path, since, until) in RELATED.items()
        }

    def _pages(self, path: str, params: Params) -> Iterator[Obj]:
        """Every value of a list answer, paging with ``from``/``count`` to an empty page or the total."""
        start = 0
        while True:
            payload = self._http.get_json(path, params={**params, "from": start, "count": PAGE})
            values = payload.get("values")
            if not isinstance(values, list) or not all(_has_id(v) for v in values):
                raise self._malformed("'values' is not a list of objects with ids")
            yield from values
            start += len(values)
            total = payload.get("fullResultSize")
            if not values or (isinstance(total, int) and start >= total):
                return

    # ---- changing ---------------------------------------------------------------------------------

    def _delete_customer(self, customer_id: int) -> bool:
        """Delete an unused customer; False if Tripletex refuses (it is anonymised instead)."""
        try:
            self._http.request("DELETE", f"/customer/{customer_id}", expected=(200, 204, 404))
        except PermanentError as exc:
            if isinstance(exc, AuthError | MalformedResponse) or exc.status_code not in REFUSED:
                raise
            return False
        return True

    def _put(self, path: str, body: Obj) -> None:
        """A partial update by ``PUT``, as Tripletex does them."""
        self._http.parse_object(self._http.request("PUT", path, json=body))

    def _malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(f"{self.name}: {what}", system=self.name)


def _holds(
    obj: Mapping[str, Any], wanted: Identifiers, emails: tuple[str, ...], phones: tuple[str, ...]
) -> bool:
    """True if any of ``obj``'s e-mail fields or phone fields is the subject's."""
    return wanted.matches(emails=(obj.get(f) for f in emails), phones=(obj.get(f) for f in phones))


def _has_id(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), int) and not isinstance(value["id"], bool)


def _unique(objs: Iterable[Obj]) -> list[Obj]:
    """Each object once, by id, in first-seen order."""
    out: dict[int, Obj] = {}
    for obj in objs:
        out.setdefault(obj["id"], obj)
    return list(out.values())


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, FieldValue]:
    """Nested objects and lists as dotted keys (``postalAddress.city``, ``orders.0.id``), values as sent."""
    out: dict[str, FieldValue] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            out |= _flatten({str(i): item for i, item in enumerate(value)}, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _anonymous_customer(customer: Mapping[str, Any]) -> Obj:
    """The partial update that strips a customer of personal data and sets it inactive."""
    ident = customer["id"]
    body: Obj = {"id": ident, "name": f"Anonymisert kunde {ident}", "isInactive": True, "description": ""}
    body |= dict.fromkeys(("email", "invoiceEmail", "overdueNoticeEmail", "website"), "")
    body |= dict.fromkeys(("phoneNumber", "phoneNumberMobile", "invoiceSMSNotificationNumber"), "")
    body |= {"invoiceSendMethod": "MANUAL", "invoiceSendSMSNotification": False}
    for key in ADDRESSES:
        address = customer.get(key)
        if isinstance(address, dict) and _has_id(address):
            lines = dict.fromkeys(("addressLine1", "addressLine2", "postalCode", "city"), "")
            body[key] = {"id": address["id"], **lines}
    return body | ({"version": customer["version"]} if isinstance(customer.get("version"), int) else {})


def _anonymous_contact(contact: Mapping[str, Any]) -> Obj:
    """The partial update that strips a contact of personal data (``isInactive`` is read-only)."""
    ident = contact["id"]
    body: Obj = {"id": ident, "firstName": "Anonymisert", "lastName": f"kontakt {ident}"}
    body |= dict.fromkeys(("email", "phoneNumberMobile", "phoneNumberWork"), "")
    return body | ({"version": contact["version"]} if isinstance(contact.get("version"), int) else {})


def from_config(
    name: str, config: TripletexConfig, policy: HttpPolicy, transport: httpx.BaseTransport | None = None
) -> Tripletex:
    """Build a :class:`Tripletex` from its configuration."""
    return Tripletex(
        name,
        base_url=config.base_url,
        consumer_token=config.consumer_token.get_secret_value(),
        employee_token=config.employee_token.get_secret_value(),
        company_id=config.company_id,
        history_start=config.history_start,
        full_scan=config.full_scan,
        policy=policy,
        transport=transport,
    )

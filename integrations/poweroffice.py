"""PowerOffice Go API v2: customers, their contact persons and outgoing invoices.

* lookup/export: Go v2 has no e-mail or phone filter, so ``GET /Customers`` and
  ``GET /ContactPersons`` are read to the end (bare JSON arrays paged by ``PageNumber`` and
  ``PageSize``) and matched here: e-mail case-insensitively, phones in E.164 after normalising
  what Go holds as typed. Invoices: ``GET /OutgoingInvoices?customerNos=`` for matched customers.
* erase: matched contact persons are deleted (``DELETE /ContactPersons/{contactId}/{id}``), or
  anonymised by JSON Patch when an invoice names them (409). Private customers are deleted
  (``DELETE /Customers/{id}``); one with transactions (409) is anonymised by JSON Patch and
  archived where Go allows it, and its invoices are kept for bookkeeping (``retained``). Company
  customers are never deleted: only the subject's e-mail addresses and phone number leave them.

Auth: OAuth 2.0 client credentials at ``/OAuth/Token`` with Basic ``ApplicationKey:ClientKey``,
and ``Ocp-Apim-Subscription-Key`` on every call, the token endpoint's included.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from integrations.auth import ClientCredentialsAuth
from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.errors import MalformedResponse
from integrations.http import DEFAULT_POLICY, HttpPolicy, Params, VendorHttp
from integrations.matching import Identifiers, identifiers

__all__ = ["PowerOfficeConfig", "PowerOfficeGo", "from_config"]

log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
FieldValue = str | int | float | bool | None
JSON_PATCH = "application/json-patch+json"
EMAIL_FIELDS = ("EmailAddress", "InvoiceEmailAddress", "PaymentReminderEmailAddress")
CC_FIELD = "InvoiceEmailAddressCC"  # up to ten addresses, ';'-separated
ANONYMOUS = "Anonymisert"
CUSTOMER_ERASED: dict[str, FieldValue] = {"Name": ANONYMOUS, "FirstName": ANONYMOUS, "LastName": ANONYMOUS}
CUSTOMER_ERASED |= dict.fromkeys((*EMAIL_FIELDS, CC_FIELD, "PhoneNumber", "LegalName", "DateOfBirth"))
CUSTOMER_ERASED |= dict.fromkeys(("NationalIdNumber", "WebsiteUrl"))
ADDRESS_ERASED = ("AddressLine1", "AddressLine2", "City", "ZipCode")
PERSON_ERASED: dict[str, FieldValue] = {"FirstName": ANONYMOUS, "LastName": ANONYMOUS, "IsActive": False}
PERSON_ERASED |= dict.fromkeys(("EmailAddress", "PhoneNumber", "Title"))
MAX_PAGES = 10_000


class PowerOfficeConfig(BaseModel):
    """Configuration of one PowerOffice Go client (integration)."""

    base_url: str = "https://goapi.poweroffice.net/v2"
    token_url: str = "https://goapi.poweroffice.net/OAuth/Token"  # noqa: S105 - a URL
    application_key: SecretStr
    client_key: SecretStr
    subscription_key: SecretStr
    page_size: int = Field(default=1000, ge=1, le=20_000)
    page_param_prefix: str = ""  # how Go binds ResourceParameters is unverified: top level assumed


@dataclass(frozen=True)
class _Found:
    """What Go holds on the subject."""

    wanted: Identifiers
    customers: list[JsonObject]
    contact_persons: list[JsonObject]
    invoices: list[JsonObject]

    def counts(self) -> dict[str, int]:
        """How many of each category."""
        return {
            "customer": len(self.customers),
            "contact_person": len(self.contact_persons),
            "invoice": len(self.invoices),
        }

    def invoices_of(self, customer: Mapping[str, Any]) -> list[JsonObject]:
        """The invoices to ``customer`` (matched on customer number)."""
        return [i for i in self.invoices if i.get("CustomerNo") == customer.get("Number")]


class _JsonPatchBodies(httpx.Auth):
    """The token auth, plus ``Content-Type: application/json-patch+json`` on PATCH requests.

    :class:`VendorHttp` sends JSON bodies as ``application/json``; Go's PATCH takes JSON Patch only.
    """

    def __init__(self, inner: httpx.Auth) -> None:
        self._inner = inner

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Label PATCH bodies, then let the token auth do its flow (refresh on 401 included)."""
        if request.method == "PATCH":
            request.headers["Content-Type"] = JSON_PATCH
        return self._inner.sync_auth_flow(request)


class PowerOfficeGo:
    """A PowerOffice Go client (company) as a :class:`~integrations.base.System`."""

    kind = "poweroffice"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        token_url: str,
        application_key: str,
        client_key: str,
        subscription_key: str,
        page_size: int = 1000,
        page_param_prefix: str = "",
        policy: HttpPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._page_size = page_size
        self._prefix = page_param_prefix
        gateway = {"Ocp-Apim-Subscription-Key": subscription_key}
        self.auth = ClientCredentialsAuth(
            system=name,
            token_url=token_url,
            client_id=application_key,
            client_secret=client_key,
            headers=gateway,
            transport=transport,
            timeout_s=policy.timeout_s,
            basic=True,
        )
        self._http = VendorHttp(
            system=name,
            base_url=base_url,
            policy=policy,
            auth=_JsonPatchBodies(self.auth),
            headers=gateway,
            transport=transport,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"PowerOfficeGo({self.name!r})"

    def check(self) -> None:
        """A token and one cheap authenticated read."""
        self._page("/Customers", None, number=1, size=1)

    def lookup(self, subject: Subject) -> LookupResult:
        """Count matching customers, contact persons and the customers' outgoing invoices."""
        return LookupResult(system=self.name, counts=self._find(subject).counts())

    def export(self, subject: Subject) -> Export:
        """Every matching customer and contact person, and every invoice to a matching customer."""
        found = self._find(subject)
        records = [_record("customer", str(c["Id"]), c) for c in found.customers]
        records += [
            _record("contact_person", f"{p['ContactId']}/{p['Id']}", p) for p in found.contact_persons
        ]
        records += [_record("invoice", str(i["Id"]), i) for i in found.invoices]
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Delete or anonymise the subject's customers and contact persons; invoices are retained."""
        found = self._find(subject)
        persons = sum(self._erase_contact_person(p) for p in found.contact_persons)
        customers = retained = 0
        for customer in found.customers:
            erased, kept = self._erase_customer(customer, found)
            customers, retained = customers + erased, retained + kept
        counts = {"customer": customers, "contact_person": persons}
        return ErasureOutcome(
            system=self.name, method="delete-or-anonymise", counts=counts, retained={"invoice": retained}
        )

    def close(self) -> None:
        """Release connections."""
        self._http.close()
        self.auth.close()

    # ---- finding ----------------------------------------------------------------------------------

    def _find(self, subject: Subject) -> _Found:
        """Customers and contact persons matching the subject, and the customers' invoices."""
        wanted = identifiers(subject, system=self.name, vendor="PowerOffice")
        customers = [c for c in self._list("/Customers") if _matched_fields(c, wanted)]
        persons = [p for p in self._list("/ContactPersons") if _matched_fields(p, wanted)]
        if not all(isinstance(p.get("ContactId"), int) for p in persons):
            raise self._malformed("contact person without ContactId")
        return _Found(wanted, customers, persons, self._invoices(customers))

    def _invoices(self, customers: Sequence[Mapping[str, Any]]) -> list[JsonObject]:
        """Outgoing invoices to any of ``customers`` (by customer number)."""
        numbers = sorted({c["Number"] for c in customers if isinstance(c.get("Number"), int)})
        if not numbers:
            return []
        return self._list("/OutgoingInvoices", {"customerNos": ",".join(map(str, numbers))})

    def _list(self, path: str, params: Params | None = None) -> list[JsonObject]:
        """Every item of a list: pages until one is empty or shorter than the fullest (Go may clamp)."""
        items: list[JsonObject] = []
        seen: set[object] = set()
        fullest = 0
        for number in range(1, MAX_PAGES + 1):
            page = self._page(path, params, number=number, size=self._page_size)
            ids = {item["Id"] for item in page}
            if page and ids <= seen:
                raise self._malformed("paging repeats a page")
            seen |= ids
            items += page
            fullest = max(fullest, len(page))
            if not page or len(page) < fullest:
                return items
        raise self._malformed("paging does not end")

    def _page(self, path: str, params: Params | None, *, number: int, size: int) -> list[JsonObject]:
        """One page: a bare JSON array of objects, each with an ``Id``."""
        paging = {f"{self._prefix}PageNumber": number, f"{self._prefix}PageSize": size}
        response = self._http.request("GET", path, params={**(params or {}), **paging})
        try:
            body = response.json()
        except ValueError as exc:
            raise self._http.malformed(response, "body is not JSON") from exc
        if not isinstance(body, list) or not all(_has_id(item) for item in body):
            raise self._http.malformed(response, "body is not an array of objects with Id")
        return body

    # ---- erasing ----------------------------------------------------------------------------------

    def _erase_contact_person(self, person: Mapping[str, Any]) -> int:
        """Delete one contact person, or anonymise it if Go refuses (409); 0 if already gone."""
        path = f"/ContactPersons/{person['ContactId']}/{person['Id']}"
        response = self._http.request("DELETE", path, expected=(200, 204, 404, 409))
        if response.status_code == 409:
            self._patch(path, _replace_ops(PERSON_ERASED) + _address_ops(person))
        return 0 if response.status_code == 404 else 1

    def _erase_customer(self, customer: Mapping[str, Any], found: _Found) -> tuple[int, int]:
        """(customers erased, invoices retained) for one matching customer."""
        path, invoices = f"/Customers/{customer['Id']}", found.invoices_of(customer)
        if customer.get("IsPerson") is not True:
            self._patch(path, _scrub_ops(customer, found.wanted))
            return 1, len(invoices)
        response = self._http.request("DELETE", path, expected=(200, 204, 404, 409))
        if response.status_code != 409:
            return (0 if response.status_code == 404 else 1), 0
        self._patch(path, _replace_ops(CUSTOMER_ERASED) + _address_ops(customer))
        self._archive(path, customer, invoices)
        return 1, len(invoices)

    def _archive(self, path: str, customer: Mapping[str, Any], invoices: Sequence[Mapping[str, Any]]) -> None:
        """Archive an anonymised customer; Go refuses (400) while it has a ledger balance."""
        if any(invoice.get("Balance") for invoice in invoices):
            log.info("%s: customer %s keeps an open balance; not archived", self.name, customer["Id"])
            return
        archive = _replace_ops({"IsArchived": True})
        if self._http.request("PATCH", path, json=archive, expected=(200, 400)).status_code == 400:
            log.warning("%s: customer %s could not be archived (HTTP 400)", self.name, customer["Id"])

    def _patch(self, path: str, ops: list[JsonObject]) -> None:
        """Apply a JSON Patch document."""
        if ops:
            self._http.request("PATCH", path, json=ops, expected=(200,))

    def _malformed(self, what: str) -> MalformedResponse:
        """A MalformedResponse; ``what`` must not hold personal data."""
        return MalformedResponse(f"{self.name}: {what}", system=self.name)


def from_config(
    name: str, config: PowerOfficeConfig, policy: HttpPolicy, transport: httpx.BaseTransport | None = None
) -> PowerOfficeGo:
    """Build a :class:`PowerOfficeGo` from its configuration."""
    return PowerOfficeGo(
        name,
        base_url=config.base_url,
        token_url=config.token_url,
        application_key=config.application_key.get_secret_value(),
        client_key=config.client_key.get_secret_value(),
        subscription_key=config.subscription_key.get_secret_value(),
        page_size=config.page_size,
        page_param_prefix=config.page_param_prefix,
        policy=policy,
        transport=transport,
    )


def _matched_fields(obj: Mapping[str, Any], wanted: Identifiers) -> list[str]:
    """Names of ``obj``'s fields that hold one of the subject's e-mails or phones."""
    hits = [name for name in EMAIL_FIELDS if wanted.has_email(obj.get(name))]
    if any(wanted.has_email(a) for a in _split_cc(obj.get(CC_FIELD))):
        hits.append(CC_FIELD)
    if wanted.has_phone(obj.get("PhoneNumber")):
        hits.append("PhoneNumber")
    return hits


def _split_cc(value: object) -> list[str]:
    """The addresses in Go's ';'-separated ``InvoiceEmailAddressCC``."""
    return [part.strip() for part in value.replace(",", ";").split(";")] if isinstance(value, str) else []


def _has_id(item: object) -> bool:
    """True for a JSON object with a number or string ``Id``."""
    if not isinstance(item, dict):
        return False
    return isinstance(item.get("Id"), int | str) and not isinstance(item.get("Id"), bool)


def _replace_ops(values: Mapping[str, FieldValue]) -> list[JsonObject]:
    """JSON Patch ``replace`` operations setting each property path to its value."""
    return [{"op": "replace", "path": f"/{name}", "value": value} for name, value in values.items()]


def _address_ops(obj: Mapping[str, Any]) -> list[JsonObject]:
    """Blank the mail address's lines, city and zip code, if there is an address."""
    if not isinstance(obj.get("MailAddress"), dict):
        return []
    return _replace_ops({f"MailAddress/{line}": None for line in ADDRESS_ERASED})


def _scrub_ops(company: Mapping[str, Any], wanted: Identifiers) -> list[JsonObject]:
    """Remove only the subject's e-mail addresses and phone from a company customer."""
    values: dict[str, FieldValue] = {}
    for name in _matched_fields(company, wanted):
        kept = [a for a in _split_cc(company.get(name)) if a and not wanted.has_email(a)]
        values[name] = (";".join(kept) or None) if name == CC_FIELD else None
    return _replace_ops(values)


def _record(category: str, record_id: str, obj: Mapping[str, Any]) -> Record:
    """A :class:`Record` with Go's fields as sent; nested objects flattened as ``MailAddress.City``."""
    return Record(category=category, record_id=record_id, fields=_flatten(obj))


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, FieldValue]:
    """Scalars as they are, nested objects as dotted keys, arrays as JSON text."""
    out: dict[str, FieldValue] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = (
                json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value
            )
    return out

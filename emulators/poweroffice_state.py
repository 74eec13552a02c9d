"""The in-memory state behind the PowerOffice Go v2 emulator: customers, contact persons, invoices.

Objects are stored as Go's own DTOs (PascalCase keys: ``CustomerDto``, ``ContactPersonDto``,
``OutgoingInvoiceDto``) so the routes can answer them as they are. JSON Patch (RFC 6902) is
applied strictly: only ``add``/``replace``/``remove`` on properties the PATCH DTO has, with their
exact PascalCase names. Thread-safe: every read and write holds ``lock``. :func:`seed_demo` seeds
the demo people.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from emulators.faults import Faults, TokenStore
from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE, Person

__all__ = ["Outcome", "PatchError", "PowerOfficeState", "seed_demo"]

JsonObject = dict[str, Any]
Outcome = Literal["deleted", "missing", "in_use"]

ADDRESS_KEYS = frozenset({"AddressLine1", "AddressLine2", "City", "ZipCode", "CountryCode"})
CUSTOMER_WRITABLE = frozenset(
    {
        "Name", "FirstName", "LastName", "LegalName", "IsPerson", "EmailAddress", "InvoiceEmailAddress",
        "InvoiceEmailAddressCC", "PaymentReminderEmailAddress", "PhoneNumber", "DateOfBirth",
        "NationalIdNumber", "OrganizationNumber", "WebsiteUrl", "IsArchived", "ExternalNumber",
        "ExternalImportReference", "ContactGroupIds", "CurrencyCode", "CustomerSince", "MailAddress",
    }
)  # fmt: skip
CUSTOMER_READ_ONLY = frozenset(
    {"Id", "Number", "IsActive", "CustomerCreatedDateTimeOffset", "LastChangedDateTimeOffset"}
)
PERSON_WRITABLE = frozenset(
    {"FirstName", "LastName", "EmailAddress", "PhoneNumber", "Title", "IsActive", "IsDefault"}
    | {"ExternalCode", "MailAddress"}
)
PERSON_READ_ONLY = frozenset({"Id", "ContactId", "CreatedDateTimeOffset", "LastChangedDateTimeOffset"})
INVOICE_KEYS = frozenset(
    {
        "Id", "CustomerId", "CustomerNo", "InvoiceNo", "VoucherNo", "VoucherDate", "DueDate", "Cid",
        "CurrencyCode", "NetAmount", "TotalAmount", "Balance", "CustomerReference",
        "CustomerReferenceContactPersonId", "DeliveryAddress1", "DeliveryAddress2", "DeliveryAddressCity",
        "DeliveryAddressZipCode", "DeliveryAddressCountryCode", "SentDateTimeOffset", "IsReversed",
    }
)  # fmt: skip
STAMP = "2025-03-14T09:30:00+00:00"


class PatchError(ValueError):
    """A JSON Patch document Go would refuse (400 ProblemDetails); the message is the detail."""


@dataclass
class PowerOfficeState:
    """One Go client's data, credentials, fault switches and [GUESS]-level behaviour switches."""

    application_key: str = "demo-application-key"
    client_key: str = "demo-client-key"
    subscription_key: str = "demo-subscription-key"
    token_lifetime_s: float = 600  # [SPEC] example expires_in
    max_page_size: int = 50  # clamp; Go's read-only MaxPageSize is 20 000 [SPEC-derived]
    delete_status: int = 204  # DELETE success code: [GUESS] 204, may be 200
    page_param_prefix: str = ""  # ResourceParameters binding: [GUESS] top-level PageNumber/PageSize
    national_id_privilege: bool = False  # without it Go shows NationalIdNumber as "hidden"
    faults: Faults = field(default_factory=Faults)
    customers: dict[int, JsonObject] = field(default_factory=dict)
    contact_persons: dict[int, JsonObject] = field(default_factory=dict)
    invoices: dict[str, JsonObject] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.token_lifetime_s)
        self._ids: Iterator[int] = itertools.count(1001)
        self._numbers: Iterator[int] = itertools.count(10001)

    # ---- seeding --------------------------------------------------------------------------------

    def add_customer(self, fields: Mapping[str, Any]) -> int:
        """Store a customer from PascalCase ``CustomerDto`` fields; returns its Id."""
        _check_keys(fields, CUSTOMER_WRITABLE)
        with self.lock:
            customer_id = next(self._ids)
            customer: JsonObject = dict.fromkeys(CUSTOMER_WRITABLE) | {
                "Id": customer_id,
                "Number": next(self._numbers),
                "IsPerson": True,
            }
            customer |= {"IsActive": True, "IsArchived": False, "MailAddress": None}
            customer |= {"CustomerCreatedDateTimeOffset": STAMP, "LastChangedDateTimeOffset": STAMP}
            self.customers[customer_id] = customer | copy.deepcopy(dict(fields))
        return customer_id

    def add_contact_person(self, contact_id: int, fields: Mapping[str, Any]) -> int:
        """Store a contact person of customer ``contact_id`` (``ContactPersonDto`` fields); returns its Id."""
        _check_keys(fields, PERSON_WRITABLE)
        with self.lock:
            if contact_id not in self.customers:
                raise KeyError(contact_id)
            person_id = next(self._ids)
            person: JsonObject = dict.fromkeys(PERSON_WRITABLE) | {
                "Id": person_id,
                "ContactId": contact_id,
                "IsActive": True,
            }
            person |= {"IsDefault": False, "CreatedDateTimeOffset": STAMP, "LastChangedDateTimeOffset": STAMP}
            self.contact_persons[person_id] = person | copy.deepcopy(dict(fields))
        return person_id

    def add_invoice(self, customer_id: int, fields: Mapping[str, Any]) -> str:
        """Store a sent outgoing invoice to ``customer_id``; returns its Id (a GUID string)."""
        _check_keys(fields, INVOICE_KEYS)
        with self.lock:
            customer = self.customers[customer_id]
            invoice_id = str(uuid.uuid4())
            invoice: JsonObject = {
                "Id": invoice_id,
                "CustomerId": customer_id,
                "CustomerNo": customer["Number"],
            }
            invoice |= {"InvoiceNo": len(self.invoices) + 1, "CurrencyCode": "NOK", "IsReversed": False}
            self.invoices[invoice_id] = invoice | dict(fields)
        return invoice_id

    # ---- what the routes do ---------------------------------------------------------------------

    def list_customers(self) -> list[JsonObject]:
        """Every customer, ordered by Id."""
        with self.lock:
            return [copy.deepcopy(c) for _, c in sorted(self.customers.items())]

    def list_contact_persons(self, contact_ids: set[int] | None) -> list[JsonObject]:
        """Contact persons (of ``contact_ids`` if given), ordered by Id."""
        with self.lock:
            people = [p for _, p in sorted(self.contact_persons.items())]
        return [copy.deepcopy(p) for p in people if contact_ids is None or p["ContactId"] in contact_ids]

    def list_invoices(self, customer_nos: set[int] | None) -> list[JsonObject]:
        """Outgoing invoices (to ``customer_nos`` if given), ordered by invoice number."""
        with self.lock:
            invoices = sorted(self.invoices.values(), key=lambda i: int(i["InvoiceNo"]))
        return [dict(i) for i in invoices if customer_nos is None or i["CustomerNo"] in customer_nos]

    def delete_customer(self, customer_id: int) -> Outcome:
        """Delete a customer and its contact persons; ``in_use`` when invoices refer to it."""
        with self.lock:
            if customer_id not in self.customers:
                return "missing"
            if any(i["CustomerId"] == customer_id for i in self.invoices.values()):
                return "in_use"
            del self.customers[customer_id]
            for person_id in [k for k, p in self.contact_persons.items() if p["ContactId"] == customer_id]:
                del self.contact_persons[person_id]  # [GUESS] Go removes them with the contact
        return "deleted"

    def delete_contact_person(self, contact_id: int, person_id: int) -> Outcome:
        """Delete a contact person; ``in_use`` when an invoice names it as the buyer's reference."""
        with self.lock:
            person = self.contact_persons.get(person_id)
            if person is None or person["ContactId"] != contact_id:
                return "missing"
            if any(i.get("CustomerReferenceContactPersonId") == person_id for i in self.invoices.values()):
                return "in_use"
            del self.contact_persons[person_id]
        return "deleted"

    def patch_customer(self, customer_id: int, ops: Any) -> JsonObject | None:
        """Apply JSON Patch ``ops`` to a customer; None if unknown; PatchError if Go would refuse."""
        with self.lock:
            customer = self.customers.get(customer_id)
            if customer is None:
                return None
            patched = apply_patch(customer, ops, CUSTOMER_WRITABLE, CUSTOMER_READ_ONLY)
            _check_customer(patched, self._has_balance(customer_id))
            self.customers[customer_id] = patched
            return copy.deepcopy(patched)

    def patch_contact_person(self, contact_id: int, person_id: int, ops: Any) -> JsonObject | None:
        """Apply JSON Patch ``ops`` to a contact person; None if unknown."""
        with self.lock:
            person = self.contact_persons.get(person_id)
            if person is None or person["ContactId"] != contact_id:
                return None
            self.contact_persons[person_id] = apply_patch(person, ops, PERSON_WRITABLE, PERSON_READ_ONLY)
            return copy.deepcopy(self.contact_persons[person_id])

    def _has_balance(self, customer_id: int) -> bool:
        return any(i["CustomerId"] == customer_id and i.get("Balance") for i in self.invoices.values())

    # ---- admin ----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Counts and ids, for ``GET /__emulator/state``."""
        with self.lock:
            counts = {"customers": len(self.customers), "contact_persons": len(self.contact_persons)}
            counts["invoices"] = len(self.invoices)
            return {
                "counts": counts,
                "customer_ids": sorted(self.customers),
                "tokens_issued": self.tokens.issued,
            }

    def reset(self) -> None:
        """Forget all data, tokens and faults."""
        with self.lock:
            self.customers.clear()
            self.contact_persons.clear()
            self.invoices.clear()
            self.tokens = TokenStore(self.token_lifetime_s)
        self.faults.update(
            dict.fromkeys(Faults.COUNTERS, 0) | {"retry_after_s": 1, "slow_s": 2.0, "latency_ms": 0}
        )
        self.faults.requests = 0


def apply_patch(
    target: Mapping[str, Any], ops: Any, writable: frozenset[str], read_only: frozenset[str]
) -> JsonObject:
    """``target`` with RFC 6902 ``ops`` applied to top-level or ``/MailAddress/*`` properties."""
    if not isinstance(ops, list) or not ops:
        raise PatchError("The JSON patch document was malformed and could not be parsed.")
    result = copy.deepcopy(dict(target))
    for op in ops:
        _apply_one(result, op, writable, read_only)
    return result


def _apply_one(result: JsonObject, op: Any, writable: frozenset[str], read_only: frozenset[str]) -> None:
    """Apply one operation in place."""
    if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
        raise PatchError("Only 'add', 'replace' and 'remove' operations are supported.")
    parts = str(op.get("path", "")).split("/")
    if parts[0] != "" or len(parts) not in (2, 3):
        raise PatchError(f"The path '{op.get('path')}' is not valid.")
    name = parts[1]
    if name in read_only:
        raise PatchError(f"The property '{name}' is read-only.")
    if name not in writable or (len(parts) == 3 and (name != "MailAddress" or parts[2] not in ADDRESS_KEYS)):
        raise PatchError(f"The target location specified by path segment '{parts[-1]}' was not found.")
    value = None if op["op"] == "remove" else op.get("value")
    if len(parts) == 2:
        result[name] = value
        return
    if not isinstance(result.get(name), dict):
        raise PatchError(f"The target location specified by path segment '{name}' was not found.")
    result[name][parts[2]] = value


def _check_customer(customer: Mapping[str, Any], has_balance: bool) -> None:
    """Go's validation of a patched customer: names required, archiving needs a zero balance."""
    required = ("FirstName", "LastName") if customer.get("IsPerson") else ("Name",)
    for name in required:
        if not customer.get(name):
            raise PatchError(f"{name} is required.")
    if customer.get("IsArchived") and has_balance:
        raise PatchError("The contact cannot be archived while it has ledger balances.")


def _check_keys(fields: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Seed data must use the DTO's PascalCase names."""
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")


# ---- demo data ------------------------------------------------------------------------------------


def _person_customer(person: Person, phone_as_typed: str) -> JsonObject:
    """A private customer as a Go user would type it in."""
    first, _, last = person.name.partition(" ")
    address = {"AddressLine1": person.street_address, "AddressLine2": None, "City": person.city}
    address |= {"ZipCode": person.postal_code, "CountryCode": "NO"}
    fields: JsonObject = {"Name": person.name, "FirstName": first, "LastName": last, "IsPerson": True}
    fields |= {"EmailAddress": person.email, "PhoneNumber": phone_as_typed, "MailAddress": address}
    return fields | {"InvoiceEmailAddress": person.email.lower(), "DateOfBirth": "1985-05-17"}


def _invoice(person: Person, number: int, balance: float) -> JsonObject:
    """A sent invoice delivered to ``person``'s address."""
    fields: JsonObject = {"VoucherDate": f"2025-0{number}-01", "DueDate": f"2025-0{number}-15"}
    fields |= {"NetAmount": 399.2, "TotalAmount": 499.0, "Balance": balance, "Cid": f"00{number}2345"}
    fields |= {"DeliveryAddress1": person.street_address, "DeliveryAddressCity": person.city}
    return fields | {"DeliveryAddressZipCode": person.postal_code, "DeliveryAddressCountryCode": "NO"}


def seed_demo(state: PowerOfficeState) -> None:
    """Kari as a private customer with invoices and as the contact at a company; the others too."""
    kari = state.add_customer(_person_customer(DEMO_SUBJECT, "912 34 567"))
    for number, balance in ((1, 0.0), (2, 0.0), (3, 499.0)):
        state.add_invoice(kari, _invoice(DEMO_SUBJECT, number, balance))
    company = state.add_customer(
        {"Name": "Fjellbekk Design AS", "IsPerson": False, "OrganizationNumber": "912345678"}
        | {"EmailAddress": "post@fjellbekk.example.no", "PhoneNumber": "22 33 44 55"}
    )
    contact = state.add_contact_person(
        company,
        {"FirstName": "Kari", "LastName": "Nordmann", "EmailAddress": DEMO_SUBJECT.email.lower()}
        | {"PhoneNumber": "+47 912 34 567", "Title": "Daglig leder, Bjørvika-kontoret"},
    )
    state.add_invoice(company, {"TotalAmount": 12_500.0, "CustomerReferenceContactPersonId": contact})
    for person in OTHER_PEOPLE:
        other = state.add_customer(_person_customer(person, person.phone.removeprefix("+47")))
        state.add_invoice(other, _invoice(person, 4, 0.0))
        state.add_contact_person(company, {"FirstName": person.name.split()[0], "EmailAddress": person.email})

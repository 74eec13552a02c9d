"""The in-memory 24SevenOffice organisation behind :mod:`emulators.twentyfour`.

Customers and sales orders are stored in the REST API's own JSON shapes (``CustomerProperties``
and ``SalesOrder`` of ``tests/vendor-specs/24so_rest.yaml``), so handlers only slice and serialise.
Switches for what the research could not establish are plain fields, set by tests.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from emulators.faults import Faults, TokenStore
from emulators.internal_db import Person

__all__ = ["INVOICED", "TwentyFourState", "person_customer"]

INVOICED = frozenset({"Invoice", "AdvanceInvoice"})  # a posted invoice: bookkeeping, kept 5 years
EMPTY_ADDRESS = {"street": None, "postalCode": None, "postalArea": None, "countrySubdivision": None}


@dataclass
class TwentyFourState:
    """One organisation: OAuth client, customers, sales orders, fault switches."""

    client_id: str = "emulator-client"
    client_secret: str = "emulator-secret"
    organization_id: str = "emulator-org"
    audience: str = "https://api.24sevenoffice.com"
    page_size: int = 100  # the API's own maximum ``limit``; tests lower it so paging is exercised
    token_lifetime_s: float = 86400
    page_param: str = "page"  # [3P] query parameter of /customers "next" links (spec declares none)
    delete_refusal_status: int = 409  # [GUESS] DELETE of a customer with invoices; 0 = allowed
    retry_after_header: bool = True  # [unknown] whether 429 answers carry Retry-After
    rate_limit_body: dict[str, Any] | None = None  # [unknown] 429 body; None = the spec's Error shape
    faults: Faults = field(default_factory=Faults)
    tokens: TokenStore = field(init=False)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _next_id: int = field(default=10001, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.token_lifetime_s)

    def add_customer(self, fields: Mapping[str, Any]) -> int:
        """Store a customer given in the API's shape (without id); return its new id."""
        with self.lock:
            customer_id = self._new_id()
            now = _now()
            stored = {"id": customer_id, "isCompany": False, "isSupplier": False, **copy.deepcopy(fields)}
            stored |= {"createdAt": now, "modifiedAt": now}
            self.customers[customer_id] = _with_name(stored)
            return customer_id

    def add_order(self, customer_id: int, status: str = "Invoice", **extra: Any) -> int:
        """Store a sales order for a customer, with the customer snapshot the API keeps; return its id."""
        with self.lock:
            order_id = self._new_id()
            customer = self.customers[customer_id]
            snapshot = _snapshot(customer)
            order = {"id": order_id, "customer": snapshot, "status": status, "date": "2025-03-14"}
            order |= {"deliveryCustomer": {k: v for k, v in snapshot.items() if k != "invoiceEmailAddresses"}}
            order |= {"currency": {"code": "NOK", "rate": 1}, "createdAt": _now(), "modifiedAt": _now()}
            self.orders[order_id] = order | copy.deepcopy(extra)
            return order_id

    def customer_page(self, page: int, size: int) -> tuple[list[dict[str, Any]], bool]:
        """One page (1-based) of customers by id, and whether another page follows."""
        with self.lock:
            ordered = [self.customers[i] for i in sorted(self.customers)]
            start = (page - 1) * size
            return copy.deepcopy(ordered[start : start + size]), start + size < len(ordered)

    def order_slice(
        self, customer_id: str | None, offset: int, size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Sales orders (optionally of one customer) from ``offset``, and whether more follow."""
        with self.lock:
            ordered = [self.orders[i] for i in sorted(self.orders)]
            if customer_id is not None:
                ordered = [o for o in ordered if str(o["customer"].get("id")) == customer_id]
            return copy.deepcopy(ordered[offset : offset + size]), offset + size < len(ordered)

    def patch_customer(self, customer_id: int, changes: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge ``changes`` into a customer (nested objects merged); None if there is no such customer."""
        with self.lock:
            customer = self.customers.get(customer_id)
            if customer is None:
                return None
            _merge(customer, changes)
            customer["modifiedAt"] = _now()
            return copy.deepcopy(_with_name(customer))

    def patch_order(self, order_id: int, changes: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge ``changes`` into a sales order; None if there is no such order."""
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return None
            _merge(order, changes)
            order["modifiedAt"] = _now()
            return copy.deepcopy(order)

    def invoiced(self, customer_id: int) -> int:
        """How many invoiced sales orders a customer has."""
        with self.lock:
            return sum(
                1
                for o in self.orders.values()
                if o["customer"].get("id") == customer_id and o["status"] in INVOICED
            )

    def delete_customer(self, customer_id: int) -> bool:
        """Remove a customer; False if there is no such customer."""
        with self.lock:
            if self.customers.pop(customer_id, None) is None:
                return False
            self.deleted.add(customer_id)
            return True

    def reset(self) -> None:
        """Forget customers, orders, faults and tokens (keeps credentials and switches)."""
        with self.lock:
            self.customers.clear()
            self.orders.clear()
            self.deleted.clear()
            fresh = Faults()  # the app's endpoints hold these objects: reset them in place
            for name in (f.name for f in fields(Faults) if not f.name.startswith("_")):
                setattr(self.faults, name, getattr(fresh, name))
            self.tokens.expire_all()
            self.tokens.issued, self.tokens.lifetime_s = 0, self.token_lifetime_s

    def snapshot(self) -> dict[str, Any]:
        """Counts and token statistics, for ``GET /__emulator/state``."""
        with self.lock:
            return {
                "counts": {"customers": len(self.customers), "salesorders": len(self.orders)},
                "deleted": sorted(self.deleted),
                "tokens_issued": self.tokens.issued,
            }

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def person_customer(person: Person, *, email: str | None, phone: str | None) -> dict[str, Any]:
    """A private-person customer in the API's shape, visiting and postal address alike."""
    first, _, last = person.name.partition(" ")
    address: dict[str, str | None] = {"street": person.street_address, "postalCode": person.postal_code}
    address |= {"postalArea": person.city, "countrySubdivision": None}
    return {
        "person": {"firstName": first, "lastName": last},
        "isCompany": False,
        "address": {
            "visit": address | {"countryCode": "NO"},
            "postal": dict(address),
            "billing": address | {"name": person.name, "countryCode": "NO"},
            "delivery": EMPTY_ADDRESS | {"name": None, "countryCode": None},
        },
        "email": {"contact": email, "billing": email},
        "phone": phone,
    }


def _with_name(customer: dict[str, Any]) -> dict[str, Any]:
    """A private person's ``name`` is generated from ``person.firstName`` and ``person.lastName``."""
    person = customer.get("person")
    if not customer.get("isCompany") and isinstance(person, dict):
        parts = [person.get("firstName"), person.get("lastName")]
        customer["name"] = " ".join(p for p in parts if p) or None
    return customer


def _snapshot(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The sales order's copy of a customer (``Customer1``), as it was when the order was made."""
    postal = customer.get("address", {}).get("postal") or {}
    emails = [e for e in (customer.get("email") or {}).values() if e]
    return {
        "id": customer["id"],
        "name": customer.get("name"),
        "street": postal.get("street"),
        "postalCode": postal.get("postalCode"),
        "postalArea": postal.get("postalArea"),
        "city": postal.get("postalArea"),
        "countryCode": "NO",
        "invoiceEmailAddresses": sorted(set(emails)),
    }


def _merge(target: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """JSON merge of ``changes`` into ``target``: objects merge, everything else replaces."""
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _now() -> str:
    """A timestamp as the API writes ``createdAt`` (``2022-01-01 18:00:00.000Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"

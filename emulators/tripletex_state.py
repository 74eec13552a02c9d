"""The in-memory company behind the Tripletex emulator, and its demo data.

Records are kept as Tripletex JSON (camelCase, references as ``{"id", "url"}``), so list and
get endpoints can answer them as they are. Switches for behaviour the research could not verify
([GUESS] in vendor-apis.md §6) are plain attributes: whether the ``email`` filter ignores case,
whether ``DELETE /customer/{id}`` refuses a customer with bookkeeping records (and with what
status), and whether a 429 carries ``Retry-After`` besides the documented ``X-Rate-Limit-*``.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from emulators.faults import Faults, TokenStore
from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE, Person

__all__ = ["KINDS", "TripletexState", "seed_demo"]

KINDS = ("customer", "contact", "invoice", "order", "posting")
BOOKKEEPING = ("invoice", "order", "posting")
BASE = "https://tripletex.no/v2"
Obj = dict[str, Any]


def ref(kind: str, ident: int) -> Obj:
    """A Tripletex reference to another object."""
    path = "ledger/posting" if kind == "posting" else kind
    return {"id": ident, "url": f"{BASE}/{path}/{ident}"}


@dataclass
class TripletexState:
    """One Tripletex company: its records, issued sessions, fault and behaviour switches."""

    consumer_token: str = "consumer-token-test"
    employee_token: str = "employee-token-test"
    page_size: int = 1000  # most values one page returns, whatever ``count`` asks (real default 1000)
    session_lifetime_s: float = 3600
    email_filter_ignores_case: bool = True  # [GUESS] customer ``email`` is documented as "Equals"
    delete_refuses_bookkept: bool = True  # [GUESS] DELETE /customer/{id} with invoices/postings
    delete_refusal_status: int = 422  # [GUESS] 409 or 422
    send_retry_after: bool = True  # [GUESS] only X-Rate-Limit-* headers are documented
    faults: Faults = field(default_factory=Faults)
    tokens: TokenStore = field(init=False)
    records: dict[str, dict[int, Obj]] = field(init=False)
    session_creates: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget every record, session and fault."""
        with self.lock:
            self.records = {kind: {} for kind in KINDS}
            self.tokens = TokenStore(self.session_lifetime_s)
            self.faults.update(
                {name: 0 for name in Faults.COUNTERS} | {"retry_after_s": 1, "slow_s": 2.0, "latency_ms": 0}
            )
            self.faults.requests = 0
            self.session_creates = 0
            self._ids = itertools.count(10001)

    def add(self, kind: str, **values: Any) -> int:
        """Store one record of ``kind`` (camelCase fields) and return its new id."""
        with self.lock:
            ident = next(self._ids)
            self.records[kind][ident] = {**ref(kind, ident), "version": 0, **values}
            return ident

    def add_customer(self, person: Person, *, number: int, **extra: Any) -> int:
        """A private-individual customer for ``person``, with a postal address."""
        address = next(self._ids)
        address_obj = {**ref("address", address), "postalCode": person.postal_code, "city": person.city}
        address_obj |= {
            "addressLine1": person.street_address,
            "addressLine2": "",
            "country": ref("country", 161),
        }
        physical = address_obj | ref("address", next(self._ids))
        values: Obj = {"name": person.name, "customerNumber": number, "isCustomer": True, "isInactive": False}
        values |= {"email": person.email, "invoiceEmail": person.email, "phoneNumber": "", "language": "NO"}
        values |= {
            "phoneNumberMobile": person.phone,
            "isPrivateIndividual": True,
            "postalAddress": address_obj,
        }
        values |= {"physicalAddress": physical, "invoiceSendMethod": "EMAIL", "description": ""}
        return self.add("customer", **(values | extra))

    def add_sale(self, customer_id: int, day: str, amount: float, text: str) -> None:
        """An order, its invoice and the invoice's two postings (receivable and revenue)."""
        order = self.add("order", customer=ref("customer", customer_id), orderDate=day, deliveryComment=text)
        number = len(self.records["invoice"]) + 1
        invoice = self.add(
            "invoice",
            invoiceNumber=number,
            invoiceDate=day,
            invoiceDueDate=day,
            customer=ref("customer", customer_id),
        )
        self.records["invoice"][invoice] |= {
            "amount": amount,
            "orders": [ref("order", order)],
            "comment": text,
        }
        for account, sign in ((1500, 1), (3000, -1)):
            posting = {"date": day, "account": ref("account", account), "amount": sign * amount}
            self.add("posting", customer=ref("customer", customer_id), description=text, **posting)

    def select(self, kind: str, *tests: Any) -> list[Obj]:
        """Copies of the records of ``kind`` passing every test, ordered by id."""
        with self.lock:
            hits = [dict(r) for _, r in sorted(self.records[kind].items()) if all(t(r) for t in tests)]
        return hits

    def owned_by(self, customer_id: int) -> dict[str, int]:
        """How many bookkeeping records reference the customer, by kind."""
        with self.lock:
            return {
                kind: sum(
                    1
                    for r in self.records[kind].values()
                    if (r.get("customer") or {}).get("id") == customer_id
                )
                for kind in BOOKKEEPING
            }

    def snapshot(self) -> dict[str, Any]:
        """Counts for ``GET /__emulator/state``."""
        with self.lock:
            counts = {kind: len(self.records[kind]) for kind in KINDS}
            return {"counts": counts, "session_creates": self.session_creates, "sessions": self.tokens.issued}


def seed_demo(state: TripletexState) -> None:
    """Kari Nordmann with three sales and a contact person record; each other person one sale."""
    with state.lock:
        kari = state.add_customer(DEMO_SUBJECT, number=1001, phoneNumberMobile="912 34 567")
        for n, (day, amount) in enumerate(
            (("2025-03-14", 624.50), ("2025-04-13", 1249.0), ("2025-05-13", 499.0))
        ):
            state.add_sale(kari, day, amount, f"Fjordlys Regnskap Basis, periode {n + 1}, «årsavgift»")
        company = state.add(
            "customer", name="Bølgen Bygg AS", organizationNumber="987654321", isInactive=False
        )
        state.add(
            "contact",
            firstName="Kari",
            lastName="Nordmann",
            email=DEMO_SUBJECT.email.lower(),
            phoneNumberMobile="+47 912 34 567",
            phoneNumberWork="22 33 44 55",
            customer=ref("customer", company),
            isInactive=False,
        )
        for number, person in enumerate(OTHER_PEOPLE, start=1002):
            other = state.add_customer(person, number=number)
            state.add_sale(other, "2025-06-02", 149.5, "Lisens, ekstra bruker (Ærøy)")

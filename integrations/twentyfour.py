"""24SevenOffice REST "Public API" v1: customers and their sales orders and invoices.

* lookup/export: ``GET /customers`` has no e-mail or phone filter, so every page is read
  (``Link: <…>; rel="next"`` to the end) and customers are matched here: e-mail
  (``email.contact``/``email.billing``) case-insensitively, ``phone`` in E.164 after parsing
  what was typed (region NO). A private person's sales orders come from
  ``GET /salesorders?customerId=…`` (paged the same way): invoiced ones (status ``Invoice`` /
  ``AdvanceInvoice``) are category ``invoice``, the rest ``salesorder``. A company customer
  that only carries the subject's e-mail or phone is exported as ``customer`` alone.
* erase, per private person: drafts/proposals/confirmed orders get their customer copy and memos
  blanked (``PATCH /salesorders/{id}``); then ``DELETE /customers/{id}`` (204, 404 = already gone),
  or, if invoices exist (bookkeeping law keeps them five years), ``PATCH /customers/{id}`` to an
  anonymous name without address, e-mail or phone, counting the invoices as ``retained``.
  A company customer only loses the e-mail/phone fields that are the subject's.

Auth: OAuth 2.0 client credentials at ``login.24sevenoffice.com/oauth/token`` with the extra
``audience`` and ``login_organization`` parameters; tokens are refreshed on expiry and on 401.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, Field, SecretStr

from integrations.auth import ClientCredentialsAuth
from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.errors import MalformedResponse
from integrations.http import DEFAULT_POLICY, HttpPolicy, Params, VendorHttp
from integrations.matching import Identifiers, identifiers

__all__ = ["TwentyFourConfig", "TwentyFourOffice", "from_config"]

INVOICED = frozenset({"Invoice", "AdvanceInvoice"})
NO_ADDRESS = {"street": None, "postalCode": None, "postalArea": None, "countrySubdivision": None}
ANONYMOUS_CUSTOMER = {
    "person": {"firstName": "Anonymisert", "lastName": "kunde"},
    "email": {"contact": None, "billing": None},
    "phone": None,
    "address": {
        "visit": NO_ADDRESS | {"countryCode": None},
        "postal": NO_ADDRESS,
        "billing": NO_ADDRESS | {"name": None, "countryCode": None},
        "delivery": NO_ADDRESS | {"name": None, "countryCode": None},
    },
}
BLANK_COPY = {"name": "Anonymisert", "street": "", "postalCode": "", "postalArea": "", "city": ""}
ANONYMOUS_ORDER = {
    "customer": BLANK_COPY | {"invoiceEmailAddresses": []},
    "deliveryCustomer": BLANK_COPY,
    "memo": "",
    "internalMemo": "",
}

FieldValue = str | int | float | bool | None
Item = dict[str, Any]


class TwentyFourConfig(BaseModel):
    """Configuration of one 24SevenOffice organisation."""

    base_url: str = "https://rest.api.24sevenoffice.com/v1"
    token_url: str = "https://login.24sevenoffice.com/oauth/token"  # noqa: S105 - a URL
    audience: str = "https://api.24sevenoffice.com"
    client_id: str
    client_secret: SecretStr
    organization_id: str
    page_size: int = Field(default=100, ge=1, le=100)


class _OrganisationCredentials(ClientCredentialsAuth):
    """Client credentials plus 24SevenOffice's ``audience`` and ``login_organization``."""

    def __init__(self, *, audience: str, organization_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._form |= {"audience": audience, "login_organization": organization_id}


class TwentyFourOffice:
    """A 24SevenOffice organisation as a :class:`~integrations.base.System`."""

    kind = "24sevenoffice"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        organization_id: str,
        audience: str = "https://api.24sevenoffice.com",
        page_size: int = 100,
        policy: HttpPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._page_size = page_size
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        self.auth = _OrganisationCredentials(
            system=name,
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            audience=audience,
            organization_id=organization_id,
            transport=transport,
            timeout_s=policy.timeout_s,
        )
        self._http = VendorHttp(
            system=name, base_url=base_url, policy=policy, auth=self.auth, transport=transport, sleep=sleep
        )

    def __repr__(self) -> str:
        return f"TwentyFourOffice({self.name!r})"

    def check(self) -> None:
        """One cheap authenticated read."""
        self._list(self._http.request("GET", "/customers", params={"limit": 1}))

    def lookup(self, subject: Subject) -> LookupResult:
        """Count matching customers and their sales orders and invoices."""
        counts = {"customer": 0, "salesorder": 0, "invoice": 0}
        for _, orders in self._matches(subject):
            counts["customer"] += 1
            for order in orders:
                counts[_order_category(order)] += 1
        return LookupResult(system=self.name, counts=counts)

    def export(self, subject: Subject) -> Export:
        """Every matching customer and each private person's sales orders and invoices."""
        records: list[Record] = []
        for customer, orders in self._matches(subject):
            records.append(self._record("customer", customer))
            records += [self._record(_order_category(order), order) for order in orders]
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Delete or anonymise each matching customer; invoices are kept and counted as retained."""
        counts = {"customer": 0, "salesorder": 0}
        retained = {"invoice": 0}
        for customer, orders in self._matches(subject):
            if customer.get("isCompany"):
                counts["customer"] += self._clear_contact(customer, subject)
                continue
            drafts = [o for o in orders if _order_category(o) == "salesorder"]
            for order in drafts:  # not yet invoiced: blank the customer copy and memos
                counts["salesorder"] += self._change("PATCH", f"/salesorders/{order['id']}", ANONYMOUS_ORDER)
            invoices = len(orders) - len(drafts)
            path = f"/customers/{customer['id']}"
            if invoices:  # kept for bookkeeping, so their customer stays, anonymised
                counts["customer"] += self._change("PATCH", path, ANONYMOUS_CUSTOMER)
                retained["invoice"] += invoices
            else:
                counts["customer"] += self._change("DELETE", path)
        return ErasureOutcome(
            system=self.name, method="delete-or-anonymise", counts=counts, retained=retained
        )

    def close(self) -> None:
        """Release connections."""
        self._http.close()
        self.auth.close()

    # ---- finding ----------------------------------------------------------------------------------

    def _matches(self, subject: Subject) -> list[tuple[Item, list[Item]]]:
        """Matching customers, each with its sales orders (none for companies)."""
        wanted = identifiers(subject, system=self.name, vendor="24SevenOffice")
        params: Params = {"limit": self._page_size, "sortBy": "id:asc"}
        found = [c for c in self._every("/customers", params) if _holds(c, wanted)]
        return [(c, [] if c.get("isCompany") else self._orders(c["id"])) for c in found]

    def _orders(self, customer_id: int) -> list[Item]:
        """Every sales order of one customer."""
        params: Params = {"customerId": str(customer_id), "limit": self._page_size}
        return list(self._every("/salesorders", params))

    def _every(self, path: str, params: Params) -> Iterator[Item]:
        """Every item of a paged list, following ``Link: rel="next"`` until there is none."""
        seen: set[str] = set()
        page: tuple[str, Params] | None = (path, params)
        while page is not None:
            response = self._http.request("GET", page[0], params=page[1])
            yield from self._list(response)
            page = self._next_page(response)
            if page is not None and repr(page) in seen:
                raise self._malformed("paging link repeats")
            seen.add(repr(page))

    def _next_page(self, response: httpx.Response) -> tuple[str, Params] | None:
        """Path and query of the ``next`` link, which must stay under the API's base URL."""
        link = response.links.get("next")
        if not link or not link.get("url"):
            return None
        url = self._base.join(link["url"])
        if _origin(url) != _origin(self._base) or not url.path.startswith(self._base.path):
            raise self._malformed("paging link leaves the API")
        return "/" + url.path.removeprefix(self._base.path), dict(url.params)

    def _list(self, response: httpx.Response) -> list[Item]:
        """The body as a list of objects, each with an integer ``id``."""
        try:
            body = response.json()
        except ValueError as exc:
            raise self._http.malformed(response, "body is not JSON") from exc
        if not isinstance(body, list) or not all(_has_id(item) for item in body):
            raise self._http.malformed(response, "body is not a list of objects with ids")
        return body

    # ---- erasing ----------------------------------------------------------------------------------

    def _change(self, method: str, path: str, body: Item | None = None) -> int:
        """Send one change: 1 if it was made, 0 if the object was already gone (404)."""
        done = 204 if method == "DELETE" else 200
        response = self._http.request(method, path, json=body, expected=(done, 404))
        return 1 if response.status_code == done else 0

    def _clear_contact(self, company: Item, subject: Subject) -> int:
        """Blank only the subject's e-mail/phone fields on a company customer: 1 if done, 0 if gone."""
        wanted = Identifiers.of(subject)
        changes: Item = {"email": {k: None for k, v in _emails(company).items() if wanted.has_email(v)}}
        if wanted.has_phone(company.get("phone")):
            changes["phone"] = None
        return self._change("PATCH", f"/customers/{company['id']}", changes)

    # ---- shapes -----------------------------------------------------------------------------------

    def _record(self, category: str, item: Mapping[str, Any]) -> Record:
        """A :class:`Record` with nested objects flattened to dotted keys and lists as JSON."""
        return Record(category=category, record_id=str(item["id"]), fields=_flatten(item))

    def _malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(f"{self.name}: {what}", system=self.name)


def from_config(
    name: str, config: TwentyFourConfig, policy: HttpPolicy, transport: httpx.BaseTransport | None = None
) -> TwentyFourOffice:
    """Build a :class:`TwentyFourOffice` from its configuration."""
    return TwentyFourOffice(
        name,
        base_url=config.base_url,
        token_url=config.token_url,
        client_id=config.client_id,
        client_secret=config.client_secret.get_secret_value(),
        organization_id=config.organization_id,
        audience=config.audience,
        page_size=config.page_size,
        policy=policy,
        transport=transport,
    )


def _holds(customer: Mapping[str, Any], wanted: Identifiers) -> bool:
    """True if one of the customer's e-mails or its phone is the subject's."""
    return wanted.matches(emails=_emails(customer).values(), phones=[customer.get("phone")])


def _emails(customer: Mapping[str, Any]) -> dict[str, Any]:
    """The customer's ``email`` object (``contact``, ``billing``), or nothing."""
    emails = customer.get("email")
    return emails if isinstance(emails, dict) else {}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _order_category(order: Mapping[str, Any]) -> str:
    return "invoice" if order.get("status") in INVOICED else "salesorder"


def _has_id(item: object) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), int) and not isinstance(item["id"], bool)


def _flatten(item: Mapping[str, Any], prefix: str = "") -> dict[str, FieldValue]:
    """``{"a": {"b": 1}, "c": [2]}`` -> ``{"a.b": 1, "c": "[2]"}``; values kept as sent."""
    out: dict[str, FieldValue] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flatten(value, f"{name}.")
        elif isinstance(value, list):
            out[name] = json.dumps(value, ensure_ascii=False)
        else:
            out[name] = value
    return out

"""HubSpot CRM: contacts with their notes, e-mails and deals (CRM v3 objects, v4 associations).

* lookup/export: ``POST /crm/v3/objects/contacts/search`` with one filter group per identifier
  (``email``, ``phone``, ``mobilephone`` EQ; groups are OR'ed), then each contact's associations
  (``GET /crm/v4/objects/contacts/{id}/associations/{type}``) and the associated objects
  (``POST /crm/v3/objects/{type}/batch/read``). Every list is followed to its last page.
* erase: ``POST /crm/v3/objects/contacts/gdpr-delete`` per contact, which removes the contact and
  its associated content; 404 (already deleted) counts as success.

Auth is a private-app token sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.errors import MalformedResponse, PermanentError
from integrations.http import DEFAULT_POLICY, BearerAuth, HttpPolicy, VendorHttp

__all__ = ["HubSpotCRM", "HubSpotConfig", "from_config"]

CONTACT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "address",
    "city",
    "zip",
    "createdate",
    "lastmodifieddate",
    "hs_object_id",
)
# category -> (HubSpot object type, properties to export)
ASSOCIATED: dict[str, tuple[str, tuple[str, ...]]] = {
    "note": (
        "notes",
        ("hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_attachment_ids", "hs_createdate"),
    ),
    "email": (
        "emails",
        ("hs_email_subject", "hs_email_text", "hs_email_direction", "hs_email_status", "hs_timestamp"),
    ),
    "deal": ("deals", ("dealname", "amount", "closedate", "pipeline", "dealstage", "createdate")),
}
SEARCH_PAGE, ASSOCIATION_PAGE, BATCH_SIZE = 100, 500, 100

FieldValue = str | int | float | bool | None


class HubSpotConfig(BaseModel):
    """Configuration of one HubSpot portal."""

    base_url: str = "https://api.hubapi.com"
    token: SecretStr


class HubSpotCRM:
    """A HubSpot portal as a :class:`~integrations.base.System`."""

    kind = "hubspot"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        token: str,
        policy: HttpPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._http = VendorHttp(
            system=name,
            base_url=base_url,
            policy=policy,
            auth=BearerAuth(token),
            transport=transport,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"HubSpotCRM({self.name!r})"

    def check(self) -> None:
        """One cheap authenticated read."""
        self._results(self._http.get_json("/crm/v3/objects/contacts", params={"limit": 1}))

    def lookup(self, subject: Subject) -> LookupResult:
        """Count matching contacts and their associated notes, e-mails and deals."""
        contact_ids = [c["id"] for c in self._find_contacts(subject)]
        counts = {"contact": len(contact_ids)}
        for category, ids in self._associated_ids(contact_ids).items():
            counts[category] = len(ids)
        return LookupResult(system=self.name, counts=counts)

    def export(self, subject: Subject) -> Export:
        """Every matching contact and every note, e-mail and deal associated with one."""
        contacts = self._find_contacts(subject)
        records = [self._record("contact", c) for c in contacts]
        for category, ids in self._associated_ids([c["id"] for c in contacts]).items():
            object_type, properties = ASSOCIATED[category]
            records += [self._record(category, o) for o in self._batch_read(object_type, ids, properties)]
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """GDPR-delete every matching contact; its associated content goes with it."""
        erased: dict[str, set[str]] = {category: set() for category in ("contact", *ASSOCIATED)}
        for contact in self._find_contacts(subject):
            associated = self._associated_ids([contact["id"]])
            if self._gdpr_delete(contact["id"]):
                erased["contact"].add(contact["id"])
                for category, ids in associated.items():
                    erased[category].update(ids)
        counts = {category: len(ids) for category, ids in erased.items()}
        return ErasureOutcome(system=self.name, method="gdpr-delete", counts=counts)

    def close(self) -> None:
        """Release connections."""
        self._http.close()

    # ---- contacts ---------------------------------------------------------------------------------

    def _find_contacts(self, subject: Subject) -> list[dict[str, Any]]:
        """Contacts matching the subject's email, phone or mobile phone, each once."""
        groups = _filter_groups(subject)
        if not groups:
            raise PermanentError(f"{self.name}: HubSpot needs an email or phone to search", system=self.name)
        # The spec requires `sorts` and `after` although the live API tolerates their absence.
        body = {
            "filterGroups": groups,
            "properties": list(CONTACT_PROPERTIES),
            "limit": SEARCH_PAGE,
            "sorts": [],
        }
        found: dict[str, dict[str, Any]] = {}
        for contact in self._search_pages(body):
            found.setdefault(contact["id"], contact)
        return list(found.values())

    def _search_pages(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every result of a search, following ``paging.next.after``."""
        path = "/crm/v3/objects/contacts/search"
        for payload in self._pages(lambda after: self._http.post_json(path, body | _after(after))):
            yield from self._results(payload)

    def _pages(self, fetch: Callable[[str | None], dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Every page of a cursor-paged list: ``fetch(after)`` until there is no ``paging.next``."""
        after: str | None = None
        seen: set[str] = set()
        while True:
            payload = fetch(after)
            yield payload
            after = _next_after(payload)
            if after is None:
                return
            if after in seen:
                raise self._malformed("paging cursor repeats")
            seen.add(after)

    def _gdpr_delete(self, contact_id: str) -> bool:
        """GDPR-delete one contact; False if HubSpot says it is already gone (404)."""
        response = self._http.request(
            "POST", "/crm/v3/objects/contacts/gdpr-delete", json={"objectId": contact_id}, expected=(204, 404)
        )
        return response.status_code == 204

    # ---- associated objects -----------------------------------------------------------------------

    def _associated_ids(self, contact_ids: Sequence[str]) -> dict[str, list[str]]:
        """Ids of notes, e-mails and deals associated with any of the contacts, each once, by category."""
        out: dict[str, list[str]] = {}
        for category, (object_type, _) in ASSOCIATED.items():
            ids: dict[str, None] = {}
            for contact_id in contact_ids:
                ids.update(dict.fromkeys(self._association_pages(contact_id, object_type)))
            out[category] = list(ids)
        return out

    def _association_pages(self, contact_id: str, object_type: str) -> Iterator[str]:
        """Every associated object id (v4 associations, paged)."""
        path = f"/crm/v4/objects/contacts/{contact_id}/associations/{object_type}"
        for payload in self._pages(
            lambda after: self._http.get_json(path, params={"limit": ASSOCIATION_PAGE, "after": after})
        ):
            yield from (self._to_object_id(item) for item in self._list(payload, "results"))

    def _batch_read(
        self, object_type: str, ids: list[str], properties: tuple[str, ...]
    ) -> Iterator[dict[str, Any]]:
        """The objects with ``ids``, read in batches; any id HubSpot cannot return is an error."""
        path = f"/crm/v3/objects/{object_type}/batch/read"
        for start in range(0, len(ids), BATCH_SIZE):
            chunk = ids[start : start + BATCH_SIZE]
            body = {
                "inputs": [{"id": i} for i in chunk],
                "properties": list(properties),
                "propertiesWithHistory": [],
            }
            response = self._http.request("POST", path, json=body, expected=(200, 207))
            payload = self._http.parse_object(response)
            results = self._results(payload)
            missing = set(chunk) - {r["id"] for r in results}
            if response.status_code == 207 or payload.get("errors") or missing:
                what = f"batch read of {object_type} could not return {len(missing)} of {len(chunk)}"
                raise PermanentError(
                    f"{self.name}: {what}", system=self.name, status_code=response.status_code
                )
            yield from results

    # ---- shapes -----------------------------------------------------------------------------------

    def _results(self, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``results`` as objects each with a string ``id`` and a ``properties`` object."""
        results = self._list(payload, "results")
        for item in results:
            if not isinstance(item.get("id"), str) or not isinstance(item.get("properties"), dict):
                raise self._malformed("result without id or properties")
        return results

    def _list(self, payload: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
        """``payload[key]`` as a list of JSON objects, or MalformedResponse."""
        items = payload.get(key)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise self._malformed(f"'{key}' is not a list of objects")
        return items

    def _to_object_id(self, item: Mapping[str, Any]) -> str:
        """``toObjectId`` as a string; HubSpot sends a number although the spec says string."""
        value = item.get("toObjectId")
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
            raise self._malformed("association without toObjectId")
        return str(value)

    def _record(self, category: str, obj: Mapping[str, Any]) -> Record:
        """A :class:`Record` from a ``SimplePublicObject``; property values are kept as sent."""
        fields: dict[str, FieldValue] = {}
        for key, value in obj["properties"].items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise self._malformed("property value is not a scalar")
            fields[key] = value
        return Record(category=category, record_id=obj["id"], fields=fields)

    def _malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(f"{self.name}: {what}", system=self.name)


def from_config(
    name: str, config: HubSpotConfig, policy: HttpPolicy, transport: httpx.BaseTransport | None = None
) -> HubSpotCRM:
    """Build a :class:`HubSpotCRM` from its configuration."""
    return HubSpotCRM(
        name,
        base_url=config.base_url,
        token=config.token.get_secret_value(),
        policy=policy,
        transport=transport,
    )


def _filter_groups(subject: Subject) -> list[dict[str, Any]]:
    """One filter group per identifier: email, phone, mobilephone (OR'ed by HubSpot)."""
    pairs = [("email", subject.email)]
    pairs += [("phone", subject.phone), ("mobilephone", subject.phone)]
    return [
        {"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}
        for prop, value in pairs
        if value
    ]


def _after(cursor: str | None) -> dict[str, str]:
    """The ``after`` field for a search body; "0" asks for the first page."""
    return {"after": cursor or "0"}


def _next_after(payload: Mapping[str, Any]) -> str | None:
    """``paging.next.after`` if there is a next page."""
    paging = payload.get("paging")
    nxt = paging.get("next") if isinstance(paging, dict) else None
    after = nxt.get("after") if isinstance(nxt, dict) else None
    return str(after) if after not in (None, "") else None

"""HubSpot CRM: contacts with their notes, e-mails and deals (CRM v3 objects, v4 associations).

* lookup/export: ``POST /crm/v3/objects/contacts/search`` with one filter group per identifier
  (``email``, ``phone``, ``mobilephone`` EQ; groups are OR'ed), then each contact's associations
  (``GET /crm/v4/objects/contacts/{id}/associations/{type}``) and the associated objects
  (``POST /crm/v3/objects/{type}/batch/read``). Every list is followed to its last page.
* erase: ``POST /crm/v3/objects/contacts/gdpr-delete`` per contact, which removes the contact and
  its associated content; 404 (already deleted) counts as success.
* rectify (Art. 16): the contacts found as lookup finds them, each updated with
  ``PATCH /crm/v3/objects/contacts/{id}`` ``{"properties": {...}}`` **[SPEC** hs_contacts_v3.json:
  "Provided property values will be overwritten. Read-only and non-existent properties will result
  in an error"**]**: name -> ``firstname``/``lastname`` (split on the last space), email -> ``email``,
  phone -> ``phone`` (and ``mobilephone`` where that held the subject's old number). A contact that
  already holds the values is not written.
* restrict (Art. 18): HubSpot has no restriction feature, so a custom contact property (config
  ``restriction_property``, a single checkbox, default ``dsar_processing_restricted``) is set to
  ``"true"``, and to ``"false"`` to lift it, by the same PATCH. The portal must define the property;
  HubSpot refuses a non-existent one with 400, which is reported as such. Set the option to null and
  restriction is an operator's task (NeedsOperator).
* suppress (Art. 21(2)): communication preferences v3 **[DOC** developers.hubspot.com
  api-reference/legacy/communication-preferences/v3**]**: ``GET
  /communication-preferences/v3/status/email/{emailAddress}`` lists the subscription types and the
  address's status in each; ``POST /communication-preferences/v3/unsubscribe`` ``{emailAddress,
  subscriptionId, legalBasis, legalBasisExplanation}`` for each one ``SUBSCRIBED`` (legal basis
  "required for GDPR enabled portals" **[CLIENT** hubspot-api-ruby
  PublicUpdateSubscriptionStatusRequest**]**). A repeat answers 400 "... is already unsubscribed
  from subscription ..." **[3P** ethyca/fides PR 5237, client code**]**, which counts as done.
  Statuses are kept by e-mail address: the subject's and those of the contacts found; with none,
  an operator must look (NeedsOperator).

Rectify, restrict and suppress count what they changed (``contact`` or ``subscription``), so a
repeat reports 0. Auth is a private-app token sent as ``Authorization: Bearer``. The status path
carries an e-mail address, so httpx's request log has such path segments masked here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

import httpx
from pydantic import BaseModel, SecretStr

from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.errors import MalformedResponse, NeedsOperator, PermanentError
from integrations.http import DEFAULT_POLICY, BearerAuth, HttpPolicy, VendorHttp
from integrations.matching import normal_phone
from integrations.rights import Corrections, RightOutcome

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
DEFAULT_RESTRICTION_PROPERTY = "dsar_processing_restricted"
STATUS_PATH = "/communication-preferences/v3/status/email/"
UNSUBSCRIBE_PATH = "/communication-preferences/v3/unsubscribe"
LEGAL_BASIS = "LEGITIMATE_INTEREST_OTHER"
LEGAL_BASIS_EXPLANATION = "The data subject objected to direct marketing (GDPR Art. 21(2), Art. 7(3))."
RESTRICT_BY_HAND = (
    "HubSpot has no restriction feature and no restriction property is configured: mark the"
    " subject's contacts restricted by hand (e.g. a custom property or a static list that every"
    " workflow and export excludes), or lift that mark, and record what was done."
)
SUPPRESS_BY_HAND = (
    "HubSpot keeps subscriptions by e-mail address and none is known for the subject: find the"
    " subject's contacts by phone in HubSpot, opt them out of marketing e-mail, SMS and WhatsApp"
    " subscriptions, and record what was done."
)

FieldValue = str | int | float | bool | None


class _NoEmailInHttpxPath(logging.Filter):
    """Mask path segments holding an e-mail address in httpx's request log (the status path has one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's URL arguments; never drop a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(_masked_url(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _masked_url(url: httpx.URL) -> httpx.URL:
    segments = url.path.split("/")
    if not any("@" in unquote(segment) for segment in segments):
        return url
    return url.copy_with(path="/".join("masked" if "@" in unquote(seg) else seg for seg in segments))


_HTTPX_LOG = logging.getLogger("httpx")
if not any(isinstance(f, _NoEmailInHttpxPath) for f in _HTTPX_LOG.filters):
    _HTTPX_LOG.addFilter(_NoEmailInHttpxPath())


class HubSpotConfig(BaseModel):
    """Configuration of one HubSpot portal."""

    base_url: str = "https://api.hubapi.com"
    token: SecretStr
    # A single-checkbox contact property marking restricted processing (Art. 18); None: by hand.
    restriction_property: str | None = DEFAULT_RESTRICTION_PROPERTY


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
        restriction_property: str | None = DEFAULT_RESTRICTION_PROPERTY,
    ) -> None:
        self.name = name
        self.restriction_property = restriction_property
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

    def rectify(self, subject: Subject, corrections: Corrections) -> RightOutcome:
        """Overwrite name, e-mail and phone in every matching contact that does not hold them yet."""
        changed = 0
        for contact in self._find_contacts(subject):
            properties = _corrected(contact["properties"], subject, corrections)
            if properties:
                self._patch(contact["id"], properties)
                changed += 1
        return RightOutcome(system=self.name, method="patch contact", counts={"contact": changed})

    def restrict(self, subject: Subject) -> RightOutcome:
        """Set the restriction property to "true" on every matching contact."""
        return self._mark(subject, "true", "restrict")

    def lift_restriction(self, subject: Subject) -> RightOutcome:
        """Set the restriction property to "false" on every matching contact that has it set."""
        return self._mark(subject, "false", "lift restriction")

    def suppress(self, subject: Subject) -> RightOutcome:
        """Unsubscribe the subject's e-mail addresses from every subscription type they are in."""
        emails = dict.fromkeys([subject.email.lower()] if subject.email else [])
        for contact in self._find_contacts(subject):
            email = contact["properties"].get("email")
            if isinstance(email, str) and email.strip():
                emails.setdefault(email.strip().lower())
        if not emails:
            raise NeedsOperator(
                f"{self.name}: no e-mail address to unsubscribe",
                system=self.name,
                instructions=SUPPRESS_BY_HAND,
            )
        unsubscribed = 0
        for email in emails:
            for subscription_id in self._subscribed(email):
                unsubscribed += self._unsubscribe(email, subscription_id)
        method = "unsubscribe (communication preferences v3)"
        return RightOutcome(system=self.name, method=method, counts={"subscription": unsubscribed})

    def close(self) -> None:
        """Release connections."""
        self._http.close()

    # ---- rights -----------------------------------------------------------------------------------

    def _mark(self, subject: Subject, value: str, what: str) -> RightOutcome:
        """Set the restriction property to ``value`` on every matching contact not holding it."""
        prop = self.restriction_property
        if not prop:
            raise NeedsOperator(
                f"{self.name}: {what} by hand", system=self.name, instructions=RESTRICT_BY_HAND
            )
        changed = 0
        for contact in self._find_contacts(subject, extra=(prop,)):
            held = contact["properties"].get(prop)
            if str(held or "false").lower() != value:
                self._patch(contact["id"], {prop: value}, refused=f"the portal refused property {prop!r}")
                changed += 1
        return RightOutcome(system=self.name, method=f"{what} ({prop})", counts={"contact": changed})

    def _patch(self, contact_id: str, properties: Mapping[str, str], *, refused: str = "") -> None:
        """``PATCH`` one contact's properties; the answer must be the updated object."""
        path = f"/crm/v3/objects/contacts/{contact_id}"
        try:
            response = self._http.request("PATCH", path, json={"properties": dict(properties)})
        except PermanentError as exc:
            if not refused or exc.status_code != 400:
                raise
            raise PermanentError(f"{self.name}: {refused}", system=self.name, status_code=400) from exc
        payload = self._http.parse_object(response)
        self._results({"results": [payload]})

    def _subscribed(self, email: str) -> list[str]:
        """Ids of the subscription types the address is ``SUBSCRIBED`` to."""
        payload = self._http.get_json(STATUS_PATH + quote(email, safe="@"))
        out: list[str] = []
        for status in self._list(payload, "subscriptionStatuses"):
            subscription_id, state = status.get("id"), status.get("status")
            if isinstance(subscription_id, bool) or not isinstance(subscription_id, str | int):
                raise self._malformed("subscription status without id")
            if not isinstance(state, str):
                raise self._malformed("subscription status without status")
            if state == "SUBSCRIBED":
                out.append(str(subscription_id))
        return out

    def _unsubscribe(self, email: str, subscription_id: str) -> int:
        """Unsubscribe from one type: 1 if done now, 0 if HubSpot says it was done before."""
        body = {"emailAddress": email, "subscriptionId": subscription_id, "legalBasis": LEGAL_BASIS}
        body["legalBasisExplanation"] = LEGAL_BASIS_EXPLANATION
        response = self._http.request("POST", UNSUBSCRIBE_PATH, json=body, expected=(200, 400))
        payload = self._http.parse_object(response)
        if response.status_code == 400:
            if "already unsubscribed" in str(payload.get("message", "")).lower():
                return 0
            raise PermanentError(f"{self.name}: unsubscribe refused", system=self.name, status_code=400)
        if payload.get("status") != "NOT_SUBSCRIBED":
            raise self._malformed("unsubscribe answer is not NOT_SUBSCRIBED")
        return 1

    # ---- contacts ---------------------------------------------------------------------------------

    def _find_contacts(self, subject: Subject, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Contacts matching the subject's email, phone or mobile phone, each once."""
        groups = _filter_groups(subject)
        if not groups:
            raise PermanentError(f"{self.name}: HubSpot needs an email or phone to search", system=self.name)
        # The spec requires `sorts` and `after` although the live API tolerates their absence.
        body = {
            "filterGroups": groups,
            "properties": list(dict.fromkeys(CONTACT_PROPERTIES + extra)),
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
        restriction_property=config.restriction_property,
    )


def _corrected(held: Mapping[str, Any], subject: Subject, corrections: Corrections) -> dict[str, str]:
    """The properties to write so a contact holds ``corrections``; empty if it holds them already."""
    wanted: dict[str, str] = {}
    if corrections.name:
        first, _, last = corrections.name.strip().rpartition(" ")
        wanted |= {"firstname": first, "lastname": last} if first else {"firstname": last, "lastname": ""}
    if corrections.email:
        wanted["email"] = corrections.email
    if corrections.phone:
        wanted["phone"] = corrections.phone
        old = normal_phone(subject.phone)
        if old and normal_phone(held.get("mobilephone")) == old:
            wanted["mobilephone"] = corrections.phone
    return {key: value for key, value in wanted.items() if not _same(key, held.get(key), value)}


def _same(key: str, held: object, value: str) -> bool:
    """Whether a held property already has the corrected value (e-mails by case, phones by number)."""
    if key == "email":
        return isinstance(held, str) and held.strip().lower() == value.lower()
    if key in ("phone", "mobilephone"):
        return normal_phone(held) is not None and normal_phone(held) == normal_phone(value)
    return (held or "") == value


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

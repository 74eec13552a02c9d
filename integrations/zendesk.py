"""Zendesk Support (API v2): users, their identities, the tickets they requested or were cc'd on, comments.

* lookup/export: ``GET /api/v2/users/search?query=`` for the e-mail and for the phone (E.164 and
  national digits). Search matches partial values in any property, notes included, so a candidate
  counts only if its e-mail or phone, or one of its ``/identities``, is the subject's
  (:mod:`integrations.zendesk_match`). Per user: ``/tickets/requested``, ``/tickets/ccd`` and each
  ticket's ``/comments``, every list to its last page (:mod:`integrations.zendesk_api`). On a
  ticket someone else requested, only the comments the subject wrote or that name them are theirs.
* erase: redact the subject's e-mails, phones and full names in comments on tickets they were only
  cc'd on (``PUT .../comments/{id}/redact``: third parties' tickets stay, counted as retained), then
  ``DELETE /api/v2/users/{id}`` and ``DELETE /api/v2/deleted_users/{id}`` (404 = done before), then
  ``DELETE /api/v2/tickets/{id}`` for each ticket they requested (404 = gone with the user); the
  ``compliance_deletion_statuses`` go into the outcome's ``method``. Closed tickets cannot be
  redacted: erasure then stops before deleting anything (PermanentError), for a human to decide.

* rectify (Art. 16), per matching user **[SPEC** zd_users.yml**]**: name and phone by ``PUT
  /api/v2/users/{id}`` ``{"user": {"name", "phone"}}``; a phone identity holding the subject's old
  number gets the new one (``PUT .../identities/{id}`` ``{"identity": {"value"}}``, which may
  "update the ``value`` property"). The e-mail: "a user's primary email address is controlled
  through the User Identities endpoints ... to update an existing email address, including the
  existing primary email address, use the Update Identity endpoint" **[DOC** support.zendesk.com
  article 4408885830682**]**, so the identity holding the subject's old e-mail gets the new value;
  without one, the new address is added to the first matching user (``POST .../identities``
  ``{"identity": {"type": "email", "value", "skip_verify_email": true}}``, 201): an e-mail is one
  identity in the whole account, so only one of the subject's users can hold it (one held by someone
  else is refused, 422, for a human to sort out). The corrected address then becomes primary (``PUT
  .../identities/{id}/make_primary``, 200 with the identities), as primary is not changed by Update
  Identity **[SPEC]**. Nothing is written where the values are already held.
* restrict (Art. 18): Zendesk has no restriction feature; the users are tagged (config
  ``restriction_tag``, default ``dsar_restricted``) with Add Tags ``PUT /api/v2/users/{id}/tags``
  ``{"tags": [...]}`` and the tag is lifted with Remove Tags ``DELETE /api/v2/users/{id}/tags``, both
  200 ``{"tags": [...]}`` **[DOC** developer.zendesk.com tags: "You must enable the tagging of users
  and organizations"**]**; the users' ``tags`` say whether a call is needed. Set the option to null
  and restriction is an operator's task (NeedsOperator). Zendesk sends no marketing: no suppression.

Categories: ``user``, ``identity``, ``ticket`` (requested), ``cc_ticket`` (cc'd on someone else's),
``comment``. Rectify and restrict count the users they changed (``user``), so a repeat reports 0.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
from pydantic import BaseModel, SecretStr, model_validator

from integrations.base import ErasureOutcome, Export, LookupResult, Record, Subject
from integrations.errors import NeedsOperator, PermanentError
from integrations.http import DEFAULT_POLICY, HttpPolicy, VendorHttp
from integrations.matching import normal_phone
from integrations.rights import Corrections, RightOutcome
from integrations.zendesk_api import ClientCredentials, ZendeskApi, make_auth
from integrations.zendesk_match import Needles, extend, hits, is_match, search_terms

__all__ = ["ZendeskConfig", "ZendeskSupport", "from_config"]

log = logging.getLogger(__name__)

Json = dict[str, Any]
FieldValue = str | int | float | bool | None
USER_FIELDS: tuple[str, ...] = ("id", "name", "email", "phone", "role", "active", "verified", "locale")
USER_FIELDS += ("time_zone", "notes", "details", "external_id", "organization_id", "tags", "created_at")
IDENTITY_FIELDS = ("id", "user_id", "type", "value", "verified", "primary", "created_at", "updated_at")
TICKET_FIELDS: tuple[str, ...] = ("id", "subject", "description", "status", "priority", "type")
TICKET_FIELDS += ("requester_id", "submitter_id", "assignee_id", "collaborator_ids", "tags", "created_at")
COMMENT_FIELDS = ("id", "ticket_id", "type", "author_id", "body", "public", "attachments", "created_at")
DEFAULT_RESTRICTION_TAG = "dsar_restricted"
RESTRICT_BY_HAND = (
    "No restriction tag is configured for Zendesk: mark the subject's users restricted by hand"
    " (e.g. a tag or user field that triggers, views and exports exclude), or lift that mark, and"
    " record what was done."
)


class ZendeskConfig(BaseModel):
    """One Zendesk account (``base_url`` is ``https://{subdomain}.zendesk.com``); one way to authenticate."""

    base_url: str
    agent_email: str | None = None
    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str = "read write"
    # The user tag marking restricted processing (Art. 18); None: by hand.
    restriction_tag: str | None = DEFAULT_RESTRICTION_TAG

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Self:
        ways = (self.agent_email and self.api_token, self.oauth_token, self.client_id and self.client_secret)
        if sum(bool(way) for way in ways) != 1:
            raise ValueError("set exactly one of agent_email+api_token, oauth_token, client_id+client_secret")
        return self


@dataclass
class _Found:
    """Everything Zendesk holds on the subject."""

    needles: Needles
    users: list[Json] = field(default_factory=list)
    identities: list[Json] = field(default_factory=list)
    tickets: list[Json] = field(default_factory=list)  # requested by the subject
    cc_tickets: list[Json] = field(default_factory=list)  # requested by someone else, subject cc'd
    comments: dict[int, list[Json]] = field(default_factory=dict)  # ticket id -> the subject's comments

    def comment_count(self, tickets: Iterable[Json]) -> int:
        """The subject's comments on ``tickets``."""
        return sum(len(self.comments.get(t["id"], [])) for t in tickets)

    def counts(self) -> dict[str, int]:
        """Counts by category, as lookup reports them."""
        comments = self.comment_count(self.tickets) + self.comment_count(self.cc_tickets)
        return {"user": len(self.users), "identity": len(self.identities), "ticket": len(self.tickets)} | {
            "cc_ticket": len(self.cc_tickets),
            "comment": comments,
        }


class ZendeskSupport:
    """A Zendesk Support account as a :class:`~integrations.base.System`."""

    kind = "zendesk"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        agent_email: str | None = None,
        api_token: str | None = None,
        oauth_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str = "read write",
        policy: HttpPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        restriction_tag: str | None = DEFAULT_RESTRICTION_TAG,
    ) -> None:
        self.name = name
        self.restriction_tag = restriction_tag
        credentials = {"agent_email": agent_email, "api_token": api_token, "oauth_token": oauth_token}
        credentials |= {"client_id": client_id, "client_secret": client_secret, "scope": scope}
        self._auth = make_auth(name, base_url, credentials, transport=transport, timeout_s=policy.timeout_s)
        http = VendorHttp(
            system=name, base_url=base_url, policy=policy, auth=self._auth, transport=transport, sleep=sleep
        )
        self._api = ZendeskApi(http)

    def __repr__(self) -> str:
        return f"ZendeskSupport({self.name!r})"

    def check(self) -> None:
        """One cheap authenticated read: the API user."""
        if not isinstance(self._api.http.get_json("/api/v2/users/me").get("user"), dict):
            raise self._api.malformed("users/me without a user")

    def lookup(self, subject: Subject) -> LookupResult:
        """Count the subject's users, identities, tickets and comments."""
        return LookupResult(system=self.name, counts=self._collect(subject).counts())

    def export(self, subject: Subject) -> Export:
        """Every user, identity, ticket and comment of the subject."""
        found = self._collect(subject)
        records = [_record("user", u, USER_FIELDS) for u in found.users]
        records += [_record("identity", i, IDENTITY_FIELDS) for i in found.identities]
        records += [_record("ticket", t, TICKET_FIELDS) for t in found.tickets]
        records += [_record("cc_ticket", t, TICKET_FIELDS) for t in found.cc_tickets]
        for ticket_id, comments in found.comments.items():
            records += [_record("comment", c | {"ticket_id": ticket_id}, COMMENT_FIELDS) for c in comments]
        return Export(system=self.name, records=tuple(records))

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Redact the subject in others' tickets, then delete their users for good, and their tickets."""
        found = self._collect(subject)
        plan = self._redaction_plan(found)
        for ticket_id, comment_id, text in plan:
            path = f"/api/v2/tickets/{ticket_id}/comments/{comment_id}/redact"
            self._api.http.parse_object(self._api.http.request("PUT", path, json={"text": text}))
        deleted = [user["id"] for user in found.users if self._delete_user(user["id"])]
        for ticket in found.tickets:  # gone with the user already (404), or deleted now
            self._api.http.request("DELETE", f"/api/v2/tickets/{ticket['id']}", expected=(204, 404))
        compliance = _summary([s for uid in deleted for s in self._compliance(uid)])
        redacted = len({(t, c) for t, c, _ in plan})
        log.info("%s: deleted %d users, redacted %d comments", self.name, len(deleted), redacted)
        erased = {"user": len(deleted), "identity": len(found.identities), "ticket": len(found.tickets)}
        erased |= {"comment": found.comment_count(found.tickets), "redacted_comment": redacted}
        retained = {"cc_ticket": len(found.cc_tickets), "comment": found.comment_count(found.cc_tickets)}
        method = f"permanent-delete+redact (compliance: {compliance})"
        return ErasureOutcome(system=self.name, method=method, counts=erased, retained=retained)

    def rectify(self, subject: Subject, corrections: Corrections) -> RightOutcome:
        """Write the corrected name, phone and e-mail into every matching user not holding them."""
        wanted = self._wanted(subject)
        matched = list(self._matching_users(wanted))
        changed: set[int] = set()
        for user, identities in matched:
            wrote_user = self._rectify_user(user, corrections)
            if self._rectify_phones(user["id"], identities, wanted, corrections) or wrote_user:
                changed.add(user["id"])
        if corrections.email and matched:
            changed |= self._rectify_email(matched, wanted, corrections.email)
        method = "update user and identities"
        return RightOutcome(system=self.name, method=method, counts={"user": len(changed)})

    def restrict(self, subject: Subject) -> RightOutcome:
        """Add the restriction tag to every matching user."""
        return self._tag(subject, add=True)

    def lift_restriction(self, subject: Subject) -> RightOutcome:
        """Remove the restriction tag from every matching user."""
        return self._tag(subject, add=False)

    def close(self) -> None:
        """Release connections."""
        self._api.http.close()
        if isinstance(self._auth, ClientCredentials):
            self._auth.close()

    # ---- rights -----------------------------------------------------------------------------------

    def _rectify_user(self, user: Json, corrections: Corrections) -> bool:
        """``PUT /users/{id}`` with the name and phone the user does not hold yet."""
        fields: Json = {}
        if corrections.name and str(user.get("name") or "").strip() != corrections.name.strip():
            fields["name"] = corrections.name.strip()
        if corrections.phone and normal_phone(user.get("phone")) != normal_phone(corrections.phone):
            fields["phone"] = corrections.phone
        if not fields:
            return False
        answer = self._api.http.parse_object(
            self._api.http.request("PUT", f"/api/v2/users/{user['id']}", json={"user": fields})
        )
        self._one(answer, "user")
        return True

    def _rectify_phones(
        self, user_id: int, identities: list[Json], wanted: Needles, corrections: Corrections
    ) -> bool:
        """Phone identities holding the subject's old number get the corrected one."""
        if not corrections.phone:
            return False
        new = normal_phone(corrections.phone)
        stale = [
            i
            for i in identities
            if "phone" in str(i.get("type", "")) and normal_phone(i.get("value")) in wanted.phones - {new}
        ]
        for identity in stale:
            self._update_identity(user_id, identity["id"], corrections.phone)
        return bool(stale)

    def _rectify_email(self, matched: list[tuple[Json, list[Json]]], wanted: Needles, email: str) -> set[int]:
        """The corrected e-mail, held by one of the users (an e-mail is one identity in the account), primary.

        The identity holding the subject's old e-mail gets the new value; without one, the new
        address is added to the first matching user. The ids of the users changed.
        """
        new = email.lower()
        found = [(user, i) for user, identities in matched for i in identities if i.get("type") == "email"]
        holders = [(user, i) for user, i in found if str(i.get("value", "")).lower() == new]
        stale = [(user, i) for user, i in found if str(i.get("value", "")).lower() in wanted.emails - {new}]
        changed: set[int] = set()
        if not holders:
            user = stale[0][0] if stale else matched[0][0]
            if stale:
                identity = self._update_identity(user["id"], stale[0][1]["id"], email)
            else:
                body = {"identity": {"type": "email", "value": email, "skip_verify_email": True}}
                path = f"/api/v2/users/{user['id']}/identities"
                response = self._api.http.request("POST", path, json=body, expected=(201,))
                identity = self._one(self._api.http.parse_object(response), "identity")
            changed.add(user["id"])
            holders = [(user, identity)]
        for user, identity in holders:
            if identity.get("primary") is not True:
                path = f"/api/v2/users/{user['id']}/identities/{identity['id']}/make_primary"
                answer = self._api.http.parse_object(self._api.http.request("PUT", path))
                self._api.objects(answer, "identities")
                changed.add(user["id"])
        return changed

    def _update_identity(self, user_id: int, identity_id: int, value: str) -> Json:
        """``PUT .../identities/{id}`` with a new value; the updated identity."""
        path = f"/api/v2/users/{user_id}/identities/{identity_id}"
        response = self._api.http.request("PUT", path, json={"identity": {"value": value}})
        return self._one(self._api.http.parse_object(response), "identity")

    def _tag(self, subject: Subject, *, add: bool) -> RightOutcome:
        """Add (or remove) the restriction tag on every matching user that lacks (or has) it."""
        tag = self.restriction_tag
        what = "restrict" if add else "lift restriction"
        if not tag:
            raise NeedsOperator(
                f"{self.name}: {what} by hand", system=self.name, instructions=RESTRICT_BY_HAND
            )
        changed = 0
        for user, _ in list(self._matching_users(self._wanted(subject))):
            tags = user.get("tags")
            if not isinstance(tags, list):
                raise self._api.malformed("user without a tag list")
            if (tag in tags) == add:
                continue
            method = "PUT" if add else "DELETE"
            response = self._api.http.request(
                method, f"/api/v2/users/{user['id']}/tags", json={"tags": [tag]}
            )
            held = self._api.http.parse_object(response).get("tags")
            if not isinstance(held, list) or (tag in held) != add:
                raise self._api.malformed("tag answer does not show the change")
            changed += 1
        return RightOutcome(system=self.name, method=f"{what} (user tag {tag})", counts={"user": changed})

    def _one(self, body: Json, key: str) -> Json:
        """``body[key]`` as an object with an integer id, or MalformedResponse."""
        return self._api.objects({key: [body.get(key)]}, key)[0]

    # ---- finding ----------------------------------------------------------------------------------

    def _collect(self, subject: Subject) -> _Found:
        """The subject's users (with identities), their tickets, and the comments that are theirs."""
        found = _Found(needles=self._wanted(subject))
        for user, identities in self._matching_users(found.needles):
            found.users.append(user)
            found.identities += identities
            extend(found.needles, user, identities)
        ids = {user["id"] for user in found.users}
        found.tickets = _unique(t for uid in sorted(ids) for t in self._tickets(uid, "requested"))
        own = {t["id"] for t in found.tickets}
        ccd = _unique(t for uid in sorted(ids) for t in self._tickets(uid, "ccd"))
        found.cc_tickets = [t for t in ccd if t.get("requester_id") not in ids and t["id"] not in own]
        for ticket in found.tickets:
            found.comments[ticket["id"]] = list(self._comments(ticket["id"]))
        for ticket in found.cc_tickets:
            theirs = (
                c for c in self._comments(ticket["id"]) if c.get("author_id") in ids or hits(c, found.needles)
            )
            found.comments[ticket["id"]] = list(theirs)
        return found

    def _wanted(self, subject: Subject) -> Needles:
        """The subject's own identifiers; PermanentError without an e-mail or a usable phone."""
        phone = normal_phone(subject.phone)
        if not subject.email and not phone:
            raise PermanentError(f"{self.name}: Zendesk needs an email or phone to search", system=self.name)
        name = (subject.name or "").strip()
        return Needles(
            emails={subject.email.lower()} if subject.email else set(),
            phones={phone} if phone else set(),
            names={name.lower()} if " " in name else set(),
        )

    def _matching_users(self, wanted: Needles) -> Iterator[tuple[Json, list[Json]]]:
        """Users whose e-mail or phone, or an identity, is the subject's, with their identities."""
        candidates: dict[int, Json] = {}
        for query in search_terms(wanted):
            for user in self._api.search_users(query):
                candidates.setdefault(user["id"], user)
        for user_id, user in sorted(candidates.items()):
            identities = list(self._api.cursor_pages(f"/api/v2/users/{user_id}/identities", "identities"))
            if is_match(user, identities, wanted):
                yield user, identities

    def _tickets(self, user_id: int, which: str) -> Iterator[Json]:
        return self._api.cursor_pages(f"/api/v2/users/{user_id}/tickets/{which}", "tickets")

    def _comments(self, ticket_id: int) -> Iterator[Json]:
        return self._api.cursor_pages(f"/api/v2/tickets/{ticket_id}/comments", "comments")

    # ---- erasing ----------------------------------------------------------------------------------

    def _redaction_plan(self, found: _Found) -> list[tuple[int, int, str]]:
        """(ticket, comment, text) to redact on others' tickets; PermanentError if one is closed."""
        plan = [
            (ticket["id"], comment["id"], text, ticket.get("status") == "closed")
            for ticket in found.cc_tickets
            for comment in found.comments[ticket["id"]]
            for text in hits(comment, found.needles)
        ]
        if closed := len({(t, c) for t, c, _, shut in plan if shut}):
            what = f"{closed} comments on closed tickets cannot be redacted"
            raise PermanentError(f"{self.name}: {what}", system=self.name)
        return [(t, c, text) for t, c, text, _ in plan]

    def _delete_user(self, user_id: int) -> bool:
        """Soft, then permanent delete; False if Zendesk says both were done before (404)."""
        soft = self._api.http.request("DELETE", f"/api/v2/users/{user_id}", expected=(200, 404))
        hard = self._api.http.request("DELETE", f"/api/v2/deleted_users/{user_id}", expected=(200, 404))
        for response in (soft, hard):
            if response.status_code == 200:
                self._api.http.parse_object(response)
        return 200 in (soft.status_code, hard.status_code)

    def _compliance(self, user_id: int) -> Iterator[Json]:
        path = f"/api/v2/users/{user_id}/compliance_deletion_statuses"
        return self._api.cursor_pages(path, "compliance_deletion_statuses", missing_ok=True, ids=False)


def from_config(
    name: str, config: ZendeskConfig, policy: HttpPolicy, transport: httpx.BaseTransport | None = None
) -> ZendeskSupport:
    """Build a :class:`ZendeskSupport` from its configuration."""
    return ZendeskSupport(
        name,
        base_url=config.base_url,
        agent_email=config.agent_email,
        api_token=_reveal(config.api_token),
        oauth_token=_reveal(config.oauth_token),
        client_id=config.client_id,
        client_secret=_reveal(config.client_secret),
        scope=config.scope,
        policy=policy,
        transport=transport,
        restriction_tag=config.restriction_tag,
    )


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _unique(items: Iterator[Json]) -> list[Json]:
    return list({item["id"]: item for item in items}.values())


def _scalar(value: object) -> FieldValue:
    """Scalars as sent; lists and objects as JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _record(category: str, obj: Json, keys: tuple[str, ...]) -> Record:
    fields = {key: _scalar(obj[key]) for key in keys if key in obj}
    return Record(category=category, record_id=str(obj["id"]), fields=fields)


def _summary(statuses: list[Json]) -> str:
    """The latest compliance deletion action per application, e.g. ``support=complete``."""
    latest = {str(s.get("application")): str(s.get("action")) for s in statuses}
    return ", ".join(f"{app}={action}" for app, action in sorted(latest.items())) or "none"

"""The in-memory account behind the Zendesk emulator: users, identities, tickets, comments, uploads,
deletions.

Objects are kept as the JSON Zendesk sends (field names from zenpy's models, **[CLIENT]**), so the
routes in :mod:`emulators.zendesk` only slice and wrap them. Behaviour the research could not
verify is a switch on :class:`ZendeskState` (each marked **[GUESS]** or **[3P]**):

* ``delete_removes_requested_tickets``: permanently deleting a user also deletes the tickets
  they requested, with their comments **[GUESS]** (Zendesk: "deletes all of their information").
* ``deletion_completes_immediately``: the compliance deletion status reaches ``complete`` at once;
  otherwise it stays ``started`` (the real purge is asynchronous) **[GUESS]**.
* ``search_normalises_phones``: a phone-like search query matches stored phones by digits,
  whatever their spacing **[GUESS]**.
* ``rate_limit_json``: 429 bodies as JSON instead of the observed ``text/plain`` **[3P]**.

Writes for rectification and restriction keep ``email`` and ``phone`` of a user equal to its
primary e-mail and phone identities (the user's ``email`` is its primary e-mail identity **[DOC]**,
``phone`` likewise **[GUESS]**);
an e-mail identity another user holds is refused **[3P]**; tags are stored lower case with spaces
as underscores **[GUESS]**.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from emulators.faults import Faults, TokenStore
from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE

__all__ = ["Invalid", "ZendeskState", "seed_demo"]

Json = dict[str, Any]
REDACTED = "\u2587"  # ▇, what Zendesk puts in place of each redacted character [SPEC]
_PHONE_QUERY = re.compile(r"^\+?[\d\s().-]{6,}$")
USER_WRITABLE = ("name", "phone", "notes", "details", "external_id", "locale", "time_zone", "tags")
IDENTITY_TYPES = ("email", "phone_number", "twitter", "facebook", "google", "agent_forwarding")


class Invalid(ValueError):
    """A write Zendesk refuses with 422 ``RecordInvalid``; the message is the description."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


@dataclass
class ZendeskState:
    """One Zendesk account; every method takes the lock, so tests may call them from any thread."""

    agent_email: str = "dsar-robot@fjordlys.example.no"
    api_token: str = "zd-api-token"
    oauth_tokens: frozenset[str] = frozenset({"zd-static-oauth-token"})
    client_id: str = "fjordlys_dsar"
    client_secret: str = "zd-client-secret"
    subdomain: str = "fjordlys"
    page_size: int = 2
    delete_removes_requested_tickets: bool = True
    deletion_completes_immediately: bool = True
    search_normalises_phones: bool = True
    rate_limit_json: bool = False
    faults: Faults = field(default_factory=Faults)
    tokens: TokenStore = field(default_factory=lambda: TokenStore(lifetime_s=3600))
    users: dict[int, Json] = field(default_factory=dict)
    deleted_users: dict[int, Json] = field(default_factory=dict)
    identities: dict[int, list[Json]] = field(default_factory=dict)
    tickets: dict[int, Json] = field(default_factory=dict)
    deleted_tickets: dict[int, Json] = field(default_factory=dict)
    comments: dict[int, list[Json]] = field(default_factory=dict)
    compliance: dict[int, list[Json]] = field(default_factory=dict)
    uploads: dict[str, list[Json]] = field(default_factory=dict)  # token -> attachments not yet used
    files: dict[int, bytes] = field(default_factory=dict)  # attachment id -> the bytes uploaded
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(9_000_001), repr=False)

    def __post_init__(self) -> None:
        self.agent_id = self.add_user("Fjordlys Kundeservice", self.agent_email, role="admin")

    @property
    def base(self) -> str:
        """The account's API root, as Zendesk writes it into ``url`` fields."""
        return f"https://{self.subdomain}.zendesk.com/api/v2"

    # ---- seeding ---------------------------------------------------------------------------------

    def add_user(self, name: str, email: str | None, phone: str | None = None, **extra: Any) -> int:
        """A user with a primary e-mail identity (if any) and a phone identity (if any)."""
        with self.lock:
            uid, now = next(self._ids), _now()
            user = {"id": uid, "url": f"{self.base}/users/{uid}.json", "name": name, "email": email}
            user |= {"phone": phone, "role": "end-user", "active": True, "verified": True, "locale": "nb"}
            user |= {"time_zone": "Europe/Oslo", "notes": "", "details": "", "external_id": None}
            user |= {"organization_id": None, "tags": [], "suspended": False, "created_at": now}
            self.users[uid] = user | {"updated_at": now} | extra
            self.identities[uid] = []
            if email:
                self.add_identity(uid, "email", email, primary=True)
            if phone:
                self.add_identity(uid, "phone_number", phone, primary=not email)
            return uid

    def add_identity(self, user_id: int, kind: str, value: str, *, primary: bool = False) -> int:
        """One more identity (``email``, ``phone_number``, ...) of a user."""
        with self.lock:
            iid, now = next(self._ids), _now()
            url = f"{self.base}/users/{user_id}/identities/{iid}.json"
            identity = {"id": iid, "url": url, "user_id": user_id, "type": kind, "value": value}
            identity |= {"verified": True, "primary": primary, "created_at": now, "updated_at": now}
            identity |= {"deliverable_state": "deliverable", "undeliverable_count": 0}
            self.identities[user_id].append(identity)
            return iid

    def add_ticket(
        self,
        requester_id: int,
        subject: str,
        comments: list[tuple[int, str]],
        *,
        cc: tuple[int, ...] = (),
        status: str = "open",
    ) -> int:
        """A ticket whose first comment is its description; ``comments`` are (author id, body)."""
        with self.lock:
            tid, now = next(self._ids), _now()
            ticket = {"id": tid, "url": f"{self.base}/tickets/{tid}.json", "external_id": None}
            ticket |= {"type": "question", "subject": subject, "raw_subject": subject, "status": status}
            ticket |= {"description": comments[0][1] if comments else "", "priority": "normal"}
            ticket |= {"requester_id": requester_id, "submitter_id": requester_id, "assignee_id": None}
            ticket |= {"collaborator_ids": list(cc), "email_cc_ids": list(cc), "follower_ids": []}
            ticket |= {"tags": [], "via": {"channel": "email"}, "created_at": now, "updated_at": now}
            self.tickets[tid] = ticket
            self.comments[tid] = []
            for author, body in comments:
                self.add_comment(tid, author, body)
            return tid

    def add_comment(
        self,
        ticket_id: int,
        author_id: int,
        body: str,
        *,
        public: bool = True,
        attachments: Sequence[Json] = (),
    ) -> int:
        """A comment on a ticket, as plain text, with attachments already uploaded (if any)."""
        with self.lock:
            cid = next(self._ids)
            comment = {"id": cid, "type": "Comment", "author_id": author_id, "body": body}
            comment |= {"html_body": f'<div class="zd-comment"><p>{body}</p></div>', "plain_body": body}
            comment |= {"public": public, "attachments": list(attachments), "audit_id": next(self._ids)}
            comment |= {"via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}}
            comment |= {"metadata": {"system": {}, "custom": {}}, "created_at": _now()}
            self.comments[ticket_id].append(comment)
            return cid

    # ---- reads -----------------------------------------------------------------------------------

    def search_users(self, query: str) -> list[Json]:
        """Active users with ``query`` in any property or identity, case-insensitively, by id."""
        needle = query.strip().strip('"').lower()
        for prefix in ("email:", "phone:", "name:"):
            needle = needle.removeprefix(prefix)
        by_digits = self.search_normalises_phones and bool(_PHONE_QUERY.match(needle))
        with self.lock:
            return [dict(u) for u in self.users.values() if self._user_matches(u, needle, by_digits)]

    def _user_matches(self, user: Json, needle: str, by_digits: bool) -> bool:
        values = [str(user.get(k) or "") for k in ("name", "email", "phone", "notes", "details")]
        values += [str(i["value"]) for i in self.identities.get(user["id"], [])]
        if by_digits and any(_digits(needle) in _digits(v) for v in values if _digits(v)):
            return True
        return bool(needle) and any(needle in v.lower() for v in values)

    def requested(self, user_id: int) -> list[Json]:
        """Tickets the user requested."""
        with self.lock:
            return [dict(t) for t in self.tickets.values() if t["requester_id"] == user_id]

    def ccd(self, user_id: int) -> list[Json]:
        """Tickets the user is cc'd on."""
        with self.lock:
            return [dict(t) for t in self.tickets.values() if user_id in t["collaborator_ids"]]

    # ---- writes ----------------------------------------------------------------------------------

    def update_user(self, user_id: int, changes: Json) -> Json | None:
        """``PUT /users/{id}``: the writable fields; None if no such user; Invalid if refused."""
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                return None
            if "email" in changes:  # [GUESS] strictness: the primary e-mail is an identity's business
                raise Invalid("Email: use the user identities endpoints to change an e-mail address")
            if "name" in changes and not str(changes["name"] or "").strip():
                raise Invalid("Name: cannot be blank")
            updates = {key: changes[key] for key in USER_WRITABLE if key in changes}
            if "tags" in updates:
                updates["tags"] = _tags(updates["tags"])
            user |= updates | {"updated_at": _now()}
            return dict(user)

    def create_identity(self, user_id: int, kind: object, value: object) -> Json | None:
        """``POST /users/{id}/identities``: a new, non-primary identity; None if no such user."""
        with self.lock:
            if user_id not in self.users:
                return None
            if kind not in IDENTITY_TYPES or not isinstance(value, str) or not value.strip():
                raise Invalid("Identity: type and value are required")
            self._refuse_duplicate(user_id, str(kind), value)
            primary = not any(i["type"] == kind for i in self.identities[user_id])
            iid = self.add_identity(user_id, str(kind), value.strip(), primary=primary)
            self._sync(user_id)
            return self._identity(user_id, iid)

    def update_identity(self, user_id: int, identity_id: int, changes: Json) -> Json | None:
        """``PUT /users/{id}/identities/{id}``: ``value`` and ``verified`` (never ``primary``)."""
        with self.lock:
            identity = self._identity(user_id, identity_id)
            if identity is None:
                return None
            if "value" in changes:
                value = changes["value"]
                if not isinstance(value, str) or not value.strip():
                    raise Invalid("Value: cannot be blank")
                self._refuse_duplicate(user_id, identity["type"], value, identity_id)
                identity["value"] = value.strip()
            if isinstance(changes.get("verified"), bool):
                identity["verified"] = changes["verified"]
            identity["updated_at"] = _now()
            self._sync(user_id)
            return dict(identity)

    def make_primary(self, user_id: int, identity_id: int) -> list[Json] | None:
        """``PUT .../make_primary``: the identity becomes its type's primary; all identities."""
        with self.lock:
            chosen = self._identity(user_id, identity_id)
            if chosen is None:
                return None
            for identity in self.identities[user_id]:
                if identity["type"] == chosen["type"]:
                    identity["primary"] = identity is chosen
            self._sync(user_id)
            return [dict(i) for i in self.identities[user_id]]

    def user_tags(
        self, user_id: int, tags: Sequence[str] | None = None, *, how: str = "show"
    ) -> list[str] | None:
        """Show, ``set``, ``add`` or ``remove`` a user's tags; the tags after; None if no such user."""
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                return None
            held, given = list(user["tags"]), _tags(tags or [])
            if how == "set":
                held = given
            elif how == "add":
                held += [t for t in given if t not in held]
            elif how == "remove":
                held = [t for t in held if t not in given]
            if held != user["tags"]:
                user["tags"] = held
                user["updated_at"] = _now()
            return list(held)

    def _identity(self, user_id: int, identity_id: int) -> Json | None:
        if user_id not in self.users:
            return None
        return next((i for i in self.identities.get(user_id, []) if i["id"] == identity_id), None)

    def _refuse_duplicate(self, user_id: int, kind: str, value: str, own: int | None = None) -> None:
        """An e-mail is one identity in the account; a value once per user otherwise [3P]."""
        wanted = value.strip().lower()
        for uid, identities in self.identities.items():
            for identity in identities:
                same = identity["type"] == kind and str(identity["value"]).lower() == wanted
                if same and identity["id"] != own and (kind == "email" or uid == user_id):
                    raise Invalid(f"Value: {value} is already being used by another user")

    def _sync(self, user_id: int) -> None:
        """The user's ``email`` and ``phone`` are its primary e-mail and phone identities."""
        user = self.users[user_id]
        for kind, key in (("email", "email"), ("phone_number", "phone")):
            primary = next((i for i in self.identities[user_id] if i["type"] == kind and i["primary"]), None)
            if primary is not None:
                user[key] = primary["value"]
        user["updated_at"] = _now()

    def redact(self, ticket_id: int, comment_id: int, text: str) -> Json | None:
        """Replace every occurrence of ``text`` in a comment with ▇; None if there is no such comment."""
        with self.lock:
            comment = next((c for c in self.comments.get(ticket_id, []) if c["id"] == comment_id), None)
            if comment is None or not text:
                return comment
            for key in ("body", "html_body", "plain_body"):
                comment[key] = comment[key].replace(text, REDACTED * len(text))
            ticket = self.tickets.get(ticket_id)
            if ticket is not None and self.comments[ticket_id][0] is comment:  # the description [GUESS]
                ticket["description"] = ticket["description"].replace(text, REDACTED * len(text))
            return dict(comment)

    def upload(self, filename: str, content_type: str, content: bytes) -> Json:
        """``POST /api/v2/uploads``: keep the bytes as an attachment under a fresh token."""
        with self.lock:
            aid, token = next(self._ids), secrets.token_urlsafe(12)
            url = f"https://{self.subdomain}.zendesk.com/attachments/token/{token}/?name={filename}"
            attachment = {"id": aid, "url": f"{self.base}/attachments/{aid}.json", "file_name": filename}
            attachment |= {"content_url": url, "mapped_content_url": url, "content_type": content_type}
            attachment |= {"size": len(content), "inline": False, "deleted": False, "thumbnails": []}
            self.files[aid] = content
            self.uploads[token] = [attachment]
            answer = {"token": token, "expires_at": _now(), "attachment": attachment}
            return answer | {"attachments": [attachment]}

    def comment_on(
        self, ticket_id: int, body: str, *, public: bool = True, uploads: Sequence[str] = ()
    ) -> Json | None:
        """The Update Ticket call's comment, written by the API user; None if there is no such ticket.

        ``uploads`` are tokens from :meth:`upload`, each used once; KeyError for one unknown [GUESS].
        """
        with self.lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                return None
            if unknown := [t for t in uploads if t not in self.uploads]:
                raise KeyError(f"{len(unknown)} unknown upload token(s)")
            attachments = [a for token in uploads for a in self.uploads.pop(token)]
            self.add_comment(ticket_id, self.agent_id, body, public=public, attachments=attachments)
            ticket["updated_at"] = _now()
            return dict(ticket)

    def attachment(self, attachment_id: int) -> bytes:
        """The bytes uploaded for an attachment (what its ``content_url`` would serve)."""
        with self.lock:
            return self.files[attachment_id]

    def soft_delete(self, user_id: int) -> Json | None:
        """Move an active user to the deleted users (``active: false``); None if not active."""
        with self.lock:
            user = self.users.pop(user_id, None)
            if user is None:
                return None
            self.deleted_users[user_id] = user | {"active": False, "updated_at": _now()}
            return dict(self.deleted_users[user_id])

    def permanent_delete(self, user_id: int) -> Json | None:
        """Scrub a soft-deleted user; None if it is not (or no longer) soft-deleted."""
        with self.lock:
            user = self.deleted_users.get(user_id)
            if user is None or user["name"] == "Permanently Deleted User":
                return None
            user |= {"name": "Permanently Deleted User", "email": None, "phone": None, "notes": ""}
            self.identities[user_id] = []
            if self.delete_removes_requested_tickets:
                for ticket in self.requested(user_id):
                    self.tickets.pop(ticket["id"])
                    self.comments.pop(ticket["id"], None)
            self.compliance[user_id] = self._statuses(user_id)
            return dict(user)

    def _statuses(self, user_id: int) -> list[Json]:
        actions = [("request_deletion", "all"), ("started", "support")]
        actions += [("complete", "support")] if self.deletion_completes_immediately else []
        common = {"account_subdomain": self.subdomain, "executer_id": self.agent_id, "user_id": user_id}
        return [{"action": a, "application": app, **common, "created_at": _now()} for a, app in actions]

    def delete_ticket(self, ticket_id: int) -> bool:
        """Soft-delete a ticket (Zendesk purges deleted tickets later); False if not there."""
        with self.lock:
            ticket = self.tickets.pop(ticket_id, None)
            if ticket is not None:
                self.deleted_tickets[ticket_id] = ticket
                self.comments.pop(ticket_id, None)
            return ticket is not None

    def reset(self) -> None:
        """Forget every user, ticket and deletion (the API user stays); clear faults and tokens."""
        with self.lock:
            for store in (self.users, self.deleted_users, self.identities, self.tickets):
                store.clear()
            for other in (self.deleted_tickets, self.comments, self.compliance, self.uploads):
                other.clear()
            self.files.clear()
            fresh = Faults()
            for name in (f.name for f in fields(Faults) if not f.name.startswith("_")):
                setattr(self.faults, name, getattr(fresh, name))
            self.tokens.expire_all()
            self.tokens.issued = 0
            self.__post_init__()

    def snapshot(self) -> Json:
        """Counts for ``GET /__emulator/state``."""
        with self.lock:
            comments = sum(len(c) for c in self.comments.values())
            return {"users": len(self.users), "deleted_users": len(self.deleted_users)} | {
                "tickets": len(self.tickets),
                "deleted_tickets": len(self.deleted_tickets),
                "comments": comments,
            }


def _tags(tags: object) -> list[str]:
    """Tags as Zendesk keeps them: lower case, spaces as underscores, each once [GUESS]."""
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise Invalid("Tags: must be a list of strings")
    return list(dict.fromkeys(t.strip().lower().replace(" ", "_") for t in tags if t.strip()))


# ---- the demo account -------------------------------------------------------------------------------


def seed_demo(state: ZendeskState) -> None:
    """Kari (a web profile and an SMS-only profile), her tickets, a cc on Ola's ticket; the others."""
    kari = state.add_user(DEMO_SUBJECT.name, DEMO_SUBJECT.email.lower(), "+47 912 34 567")  # as typed
    state.add_identity(kari, "email", "kari.nordmann@jobb.example.no")
    sms = state.add_user("Kari (SMS)", None, None)
    state.add_identity(sms, "phone_number", "91234567", primary=True)
    ola, namesake, ingrid = (state.add_user(p.name, p.email, p.phone) for p in OTHER_PEOPLE)
    with state.lock:  # a colleague's notes mention Kari, so searches find Ola too
        state.users[ola]["notes"] = "Kollega: kari.nordmann@example.no, 912 34 567"
    _seed_karis_tickets(state, kari, sms)
    access = "Hei, kan dere gi Kari Nordmann (kari.nordmann@example.no, tlf. 912 34 567) tilgang til kontoen?"
    thanks = [(state.agent_id, "Hei Ola, det er ordnet."), (kari, "Takk! Jeg kommer inn nå. Mvh Kari")]
    state.add_ticket(ola, "Tilgang for ny kollega", [(ola, access), *thanks], cc=(kari,), status="pending")
    state.add_ticket(ola, "Ny fakturaadresse", [(ola, "Ny adresse: Thorvald Meyers gate 7, 0555 Oslo.")])
    order = [(namesake, "Hei, jeg er Kari Nordmann fra Bergen og vil bestille én lisens til.")]
    state.add_ticket(namesake, "Bestilling av ekstra lisens", [*order, (state.agent_id, "Registrert.")])
    state.add_ticket(ingrid, "Spørsmål om årsoppgjør", [(ingrid, "Når kommer årsoppgjøret for 2025?")])


def _seed_karis_tickets(state: ZendeskState, kari: int, sms: int) -> None:
    """Three tickets Kari requested on the web (one closed), one from her SMS-only profile."""
    agent = state.agent_id
    address = f"{DEMO_SUBJECT.street_address}, {DEMO_SUBJECT.postal_code} {DEMO_SUBJECT.city}"
    invoice = [
        (kari, f"Hei! Fakturaen for mars er feil, jeg har én lisens. Hilsen Kari Nordmann, {address}"),
        (agent, "Hei Kari, takk for beskjed. Vi krediterer mellomlegget."),
        (kari, "Tusen takk, det går fint!"),
    ]
    state.add_ticket(kari, "Faktura 10023 stemmer ikke", invoice, status="solved")
    login = [(kari, "Jeg får ikke logget inn med kari.nordmann@example.no."), (agent, "Ny lenke er sendt.")]
    state.add_ticket(kari, "Får ikke logget inn på Min side", login)
    state.add_ticket(kari, "Oppsigelse", [(kari, "Ønsker å si opp modulen «Lønn».")], status="closed")
    state.add_ticket(sms, "SMS fra 912 34 567", [(sms, "Ring meg tilbake om regningen.")], status="new")

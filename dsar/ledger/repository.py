"""Keyword-only functions over the ledger; each takes the session it works in.

Every state change appends an event to the request's chain in the same transaction, so
the ledger and its audit trail never disagree.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dsar.calendar import due_date, local_date
from dsar.crypto import Cipher, keyed_hash
from dsar.ledger.chain import append_event, as_utc
from dsar.ledger.models import (
    Document,
    OpenRequestKey,
    Request,
    RequestStatus,
    RequestType,
    Suspension,
    SystemResult,
    SystemStatus,
)
from integrations.base import Subject

__all__ = [
    "DuplicateRequest",
    "Keys",
    "UnknownRequest",
    "effective_due_date",
    "get_request",
    "load_subject",
    "open_requests",
    "record_document",
    "register_request",
    "reopen_request",
    "set_status",
    "suspended_days",
    "system_result",
]


class UnknownRequest(LookupError):
    """No request with that id."""


class DuplicateRequest(ValueError):
    """An identical request (same type, same subject) is still open."""

    def __init__(self, existing_id: str) -> None:
        super().__init__(f"an identical request is already open: {existing_id}")
        self.existing_id = existing_id


@dataclass(frozen=True)
class Keys:
    """What the ledger needs to protect subject identifiers."""

    cipher: Cipher
    hash_key: str

    def hash(self, value: str | None) -> str | None:
        return keyed_hash(self.hash_key, value) if value else None


def new_request_id() -> str:
    return f"dsar-{secrets.token_hex(6)}"


def register_request(
    session: Session,
    *,
    keys: Keys,
    request_type: RequestType,
    subject: Subject,
    received_at: datetime,
    ticket_ref: str | None = None,
    language: str = "nb",
    details: Mapping[str, Any] | None = None,
) -> Request:
    """Create a request with its statutory due date; refuse an identical open one.

    ``details`` (corrections asked for, the controller a processor-only request belongs to) are
    stored encrypted, like the subject.
    """
    email_hash, phone_hash = keys.hash(subject.email), keys.hash(subject.phone)
    existing = _open_duplicate(session, request_type, email_hash, phone_hash)
    if existing is not None:
        raise DuplicateRequest(existing)
    received = local_date(received_at)
    request = Request(
        id=new_request_id(),
        type=request_type,
        status=RequestStatus.RECEIVED,
        checkpoint="registered",
        received_at=received_at.astimezone(UTC),
        received_date=received,
        due_date=due_date(received),
        ticket_ref=ticket_ref,
        language=language,
        email_hash=email_hash,
        phone_hash=phone_hash,
        subject_ciphertext=keys.cipher.encrypt_json(
            {"email": subject.email, "phone": subject.phone, "name": subject.name}
        ),
        details_ciphertext=keys.cipher.encrypt_json(dict(details)) if details else None,
    )
    session.add(request)
    session.flush()
    _hold_keys(session, request, email_hash, phone_hash)
    append_event(
        session,
        request_id=request.id,
        kind="request.registered",
        data={
            "type": request_type.value,
            "received_date": received.isoformat(),
            "due_date": request.due_date.isoformat(),
            "ticket": ticket_ref,
            "language": language,
            "identifiers": [k for k in ("email", "phone", "name") if getattr(subject, k)],
            "details": sorted(details or {}),
        },
    )
    return request


def _open_duplicate(
    session: Session, kind: RequestType, email_hash: str | None, phone_hash: str | None
) -> str | None:
    matches = [c == h for c, h in ((Request.email_hash, email_hash), (Request.phone_hash, phone_hash)) if h]
    if not matches:
        return None
    open_states = [s for s in RequestStatus if s.is_open]
    stmt = select(Request.id).where(Request.type == kind, Request.status.in_(open_states), or_(*matches))
    return session.scalars(stmt.limit(1)).first()


def _hold_keys(session: Session, request: Request, email_hash: str | None, phone_hash: str | None) -> None:
    """Claim the request's identifier keys; a concurrent identical request loses here."""
    keys = [
        f"{request.type.value}:{name}:{h}" for name, h in (("email", email_hash), ("phone", phone_hash)) if h
    ]
    try:
        with session.begin_nested():
            session.add_all(OpenRequestKey(key=key, request_id=request.id) for key in keys)
    except IntegrityError:
        holder = session.scalars(
            select(OpenRequestKey.request_id).where(OpenRequestKey.key.in_(keys))
        ).first()
        raise DuplicateRequest(holder or "an open request") from None


REOPENABLE = ("identity_unconfirmed", "identity_rejected")


def reopen_request(session: Session, *, request_id: str, today: date, note: str) -> Request:
    """Open again a request closed for want of identity; the days it stood closed do not count.

    Raises ValueError if it was closed otherwise, DuplicateRequest if an identical one is open.
    """
    request = get_request(session, request_id)
    if request.status is not RequestStatus.CLOSED or request.checkpoint not in REOPENABLE:
        raise ValueError(
            f"{request_id} is {request.status.value} ({request.checkpoint}); "
            "only a request closed for want of identity reopens"
        )
    _hold_keys(session, request, request.email_hash, request.phone_hash)
    closed_on = local_date(as_utc(request.closed_at)) if request.closed_at else today
    suspension = Suspension(
        request_id=request.id,
        started_on=closed_on,
        ended_on=max(today, closed_on),
        reason="closed: identity not confirmed, then reopened",
    )
    request.suspensions.append(suspension)  # cascades into the session
    request.closed_at = None
    set_status(session, request=request, status=RequestStatus.RECEIVED, checkpoint="reopened", note=note)
    return request


def get_request(session: Session, request_id: str) -> Request:
    request = session.get(Request, request_id)
    if request is None:
        raise UnknownRequest(f"no such request: {request_id}")
    return request


def load_subject(session: Session, *, keys: Keys, request_id: str) -> Subject:
    """Decrypt the request's subject identifiers (keep the result out of Prefect)."""
    values: dict[str, Any] = keys.cipher.decrypt_json(get_request(session, request_id).subject_ciphertext)
    return Subject(email=values.get("email"), phone=values.get("phone"), name=values.get("name"))


def load_details(session: Session, *, keys: Keys, request_id: str) -> dict[str, Any]:
    """The request's details (decrypted): ``corrections``, ``controller``; empty when none."""
    sealed = get_request(session, request_id).details_ciphertext
    return dict(keys.cipher.decrypt_json(sealed)) if sealed else {}


def set_status(
    session: Session,
    *,
    request: Request,
    status: RequestStatus,
    checkpoint: str | None = None,
    note: str | None = None,
) -> None:
    """Move the request on and record why."""
    request.status = status
    if checkpoint:
        request.checkpoint = checkpoint
    if status is RequestStatus.CLOSED or status is RequestStatus.COMPLETED:
        request.closed_at = datetime.now(UTC)
        session.execute(delete(OpenRequestKey).where(OpenRequestKey.request_id == request.id))
    append_event(
        session,
        request_id=request.id,
        kind="request.status",
        data={"status": status.value, "checkpoint": request.checkpoint, "note": note},
    )


def system_result(session: Session, *, request_id: str, system: str, kind: str) -> SystemResult:
    """The request x system row, created as pending on first use."""
    stmt = select(SystemResult).where(SystemResult.request_id == request_id, SystemResult.system == system)
    row = session.scalars(stmt).first()
    if row is None:
        row = SystemResult(
            request_id=request_id,
            system=system,
            kind=kind,
            status=SystemStatus.PENDING,
            counts={},
            erased_counts={},
            attempts=0,
        )
        session.add(row)
        session.flush()
    return row


def open_requests(session: Session) -> list[Request]:
    """Open requests, soonest deadline first."""
    open_states = [s for s in RequestStatus if s.is_open]
    stmt = select(Request).where(Request.status.in_(open_states)).order_by(Request.due_date, Request.id)
    return list(session.scalars(stmt))


def suspended_days(request: Request, today: date) -> int:
    """Calendar days the clock stood still (an open suspension counts up to today)."""
    return sum(((s.ended_on or today) - s.started_on).days for s in request.suspensions)


def effective_due_date(request: Request, today: date) -> date:
    """The due date with the extension and every identity suspension applied."""
    return due_date(
        request.received_date, extended=request.extended, suspended_days=suspended_days(request, today)
    )


def record_document(session: Session, *, request_id: str, kind: str, path: str, sha256: str) -> Document:
    document = Document(
        request_id=request_id, kind=kind, path=path, sha256=sha256, created_at=datetime.now(UTC)
    )
    session.add(document)
    append_event(
        session, request_id=request_id, kind="document.created", data={"kind": kind, "sha256": sha256}
    )
    return document

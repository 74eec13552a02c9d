"""Turning what a requester gave us into a registered request (CLI now, webhooks later).

Validation happens before anything is written: a bad e-mail, phone, type or language
leaves the ledger untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dsar.calendar import OSLO
from dsar.crypto import normalise_email, normalise_phone
from dsar.errors import BadInput
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.models import RequestType
from integrations.base import Subject

__all__ = ["LANGUAGES", "IntakeError", "Registered", "build_subject", "register"]

LANGUAGES = ("nb", "en")


class IntakeError(BadInput):
    """The request cannot be registered as given; the message says why (no personal data)."""


@dataclass(frozen=True)
class Registered:
    request_id: str
    request_type: RequestType
    due_date: str


def build_subject(*, email: str | None, phone: str | None, name: str | None, region: str = "NO") -> Subject:
    """Normalise the identifiers; at least an e-mail address or a phone number is required."""
    if not email and not phone:
        raise IntakeError("give at least an e-mail address or a phone number")
    try:
        clean_email = normalise_email(email) if email else None
    except ValueError:
        raise IntakeError("the e-mail address is not valid") from None
    try:
        clean_phone = normalise_phone(phone, region) if phone else None
    except ValueError:
        raise IntakeError("the phone number is not valid") from None
    clean_name = " ".join(name.split()) if name else None
    return Subject(email=clean_email, phone=clean_phone, name=clean_name or None)


def register(
    ledger: Ledger,
    *,
    request_type: str,
    subject: Subject,
    ticket_ref: str | None = None,
    language: str = "nb",
    received_at: datetime | None = None,
) -> Registered:
    """Validate and write one request; identical open requests are refused, not duplicated."""
    try:
        kind = RequestType(request_type)
    except ValueError:
        raise IntakeError(f"unknown request type {request_type!r}") from None
    if language not in LANGUAGES:
        raise IntakeError(f"unsupported language {language!r} (use nb or en)")
    moment = received_at or datetime.now(OSLO)
    if moment.tzinfo is None:
        raise IntakeError("received-at must carry a time zone")
    try:
        with ledger.session() as session:
            request = repo.register_request(
                session,
                keys=ledger.keys,
                request_type=kind,
                subject=subject,
                received_at=moment,
                ticket_ref=ticket_ref,
                language=language,
            )
            return Registered(request.id, kind, request.due_date.isoformat())
    except repo.DuplicateRequest as exc:
        raise IntakeError(str(exc)) from None

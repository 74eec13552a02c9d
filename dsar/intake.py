"""Turning what a requester gave us into a registered request (the CLI and the intake endpoint).

Validation happens before anything is written: a bad e-mail, phone, type or language
leaves the ledger untouched. :func:`register` refuses an identical open request (the CLI's
exit 2); :func:`register_or_existing` answers it with the open one instead (webhooks are
delivered more than once).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dsar.calendar import OSLO
from dsar.crypto import normalise_email, normalise_phone
from dsar.errors import BadInput
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import RequestType
from integrations.base import Subject

__all__ = ["LANGUAGES", "IntakeError", "Registered", "build_subject", "register", "register_or_existing"]

LANGUAGES = ("nb", "en")


class IntakeError(BadInput):
    """The request cannot be registered as given; the message says why (no personal data)."""


@dataclass(frozen=True)
class Registered:
    request_id: str
    request_type: RequestType
    due_date: str
    duplicate: bool = False  # True: an identical open request already had this id
    ticket_ref: str | None = None  # the ticket the request was first registered from


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


def build_details(
    *,
    corrections: Mapping[str, str | None] | None = None,
    controller: str | None = None,
    controller_email: str | None = None,
    region: str = "NO",
) -> dict[str, Any]:
    """Check and normalise a request's details: corrected values (Art. 16), the controller we
    process the data for (then we only forward the request, as its processor)."""
    details: dict[str, Any] = {}
    given = {k: v for k, v in (corrections or {}).items() if v}
    if set(given) - {"name", "email", "phone"}:
        raise IntakeError("corrections may name: name, email, phone")
    if given:
        details["corrections"] = {
            "name": " ".join(str(given["name"]).split()) if given.get("name") else None,
            "email": _valid(normalise_email, given.get("email"), "corrected e-mail address"),
            "phone": _valid(
                lambda v: normalise_phone(v, region), given.get("phone"), "corrected phone number"
            ),
        }
    if controller or controller_email:
        if not controller or not controller_email:
            raise IntakeError("name the controller and give its e-mail address")
        try:
            details["controller"] = {
                "name": " ".join(controller.split()),
                "email": normalise_email(controller_email),
            }
        except ValueError:
            raise IntakeError("the controller's e-mail address is not valid") from None
    return details


def _valid(normalise: Callable[[str], str], value: str | None, what: str) -> str | None:
    if not value:
        return None
    try:
        return normalise(value)
    except ValueError:
        raise IntakeError(f"the {what} is not valid") from None


def register(
    ledger: Ledger,
    *,
    request_type: str,
    subject: Subject,
    ticket_ref: str | None = None,
    language: str = "nb",
    received_at: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> Registered:
    """Validate and write one request; identical open requests are refused, not duplicated."""
    try:
        return _register(ledger, request_type, subject, ticket_ref, language, received_at, details)
    except repo.DuplicateRequest as exc:
        raise IntakeError(str(exc)) from None


def register_or_existing(
    ledger: Ledger,
    *,
    request_type: str,
    subject: Subject,
    ticket_ref: str | None = None,
    language: str = "nb",
    received_at: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> Registered:
    """Like :func:`register`, but an identical open request is answered with itself (``duplicate``).

    The repeat is noted on the open request's event chain (which ticket it came from).
    """
    try:
        return _register(ledger, request_type, subject, ticket_ref, language, received_at, details)
    except repo.DuplicateRequest as exc:
        return _existing(ledger, exc.existing_id, ticket_ref)


def _register(
    ledger: Ledger,
    request_type: str,
    subject: Subject,
    ticket_ref: str | None,
    language: str,
    received_at: datetime | None,
    details: Mapping[str, Any] | None = None,
) -> Registered:
    """Check the values, then write the request; raises repo.DuplicateRequest for a repeat."""
    kind, moment = _checked(request_type, language, received_at)
    if kind is RequestType.RECTIFICATION and not (details or {}).get("corrections"):
        raise IntakeError("a rectification request needs the corrected values")
    with ledger.session() as session:
        request = repo.register_request(
            session,
            keys=ledger.keys,
            request_type=kind,
            subject=subject,
            received_at=moment,
            ticket_ref=ticket_ref,
            language=language,
            details=details,
        )
        return Registered(request.id, kind, request.due_date.isoformat(), ticket_ref=ticket_ref)


def _checked(request_type: str, language: str, received_at: datetime | None) -> tuple[RequestType, datetime]:
    """The request type and the moment of receipt, or IntakeError."""
    try:
        kind = RequestType(request_type)
    except ValueError:
        raise IntakeError(f"unknown request type {request_type!r}") from None
    if language not in LANGUAGES:
        raise IntakeError(f"unsupported language {language!r} (use nb or en)")
    moment = received_at or datetime.now(OSLO)
    if moment.tzinfo is None:
        raise IntakeError("received-at must carry a time zone")
    return kind, moment


def _existing(ledger: Ledger, request_id: str, ticket_ref: str | None) -> Registered:
    """The open request a repeat matched, with the repeat noted on its chain."""
    with ledger.session() as session:
        request = repo.get_request(session, request_id)
        due = repo.effective_due_date(request, datetime.now(OSLO).date())
        data: dict[str, Any] = {"ticket": ticket_ref}
        append_event(session, request_id=request_id, kind="request.repeated", data=data)
        return Registered(
            request.id, request.type, due.isoformat(), duplicate=True, ticket_ref=request.ticket_ref
        )

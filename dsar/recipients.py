"""Art. 19: telling every recipient of the subject's data about an erasure, rectification or restriction.

The recipients are the register's non-internal systems that held the subject's data (Art. 4(9):
processors count), reached at their ``privacy_contact``; systems sharing a contact get one mail.
Each notice has a Message-ID fixed by request, action and contact, goes through the outbox and is
recorded as a ``recipient.notified`` event once, so a re-run after a crash sends nothing twice.
A notice counts as given only when the SMTP server accepted it (:func:`notices`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import outbox
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Event, MailStatus, OutboxMail
from dsar.runtime import Runtime
from integrations.errors import RetryableError
from integrations.mail import Mail, Mailer
from integrations.rights import Corrections

__all__ = ["Action", "Notice", "notices", "notify_recipients"]

Action = Literal["erasure", "rectification", "restriction", "restriction_lifted"]


@dataclass(frozen=True)
class Notice:
    """One Art. 19 notice as the ledger knows it (no personal data)."""

    vendor: str
    contact: str
    systems: tuple[str, ...]
    action: str
    message_id: str
    sent_at: datetime | None


def notify_recipients(
    rt: Runtime,
    request_id: str,
    action: Action,
    systems: Iterable[str],
    corrections: Corrections | None = None,
) -> list[Notice]:
    """Notify the recipients behind ``systems`` (those the action was carried out in), once each.

    Raises :class:`RetryableError` when a notice could not be delivered yet; it stays queued.
    """
    by_contact: dict[str, list[tuple[str, str]]] = {}
    for system in systems:
        register = rt.spec(system).register
        if register is None or not register.is_recipient or not register.privacy_contact:
            continue
        by_contact.setdefault(register.privacy_contact, []).append((system, register.vendor or system))
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
        already = {e.data["message_id"] for e in _notified(session, request_id)}
    for contact, held_by in sorted(by_contact.items()):
        message_id = _message_id(request_id, action, contact)
        vendor, names = held_by[0][1], tuple(system for system, _ in held_by)
        subject_line, body = rt.renderer.render_mail(
            "recipient_notice",
            rt.settings.processor_language,
            vendor=vendor,
            systems=", ".join(names),
            action=action,
            subject=subject,
            corrections=corrections,
            reference=request.id,
            controller=rt.controller,
        )
        mail = Mail(to=contact, subject=subject_line, body=body, message_id=message_id)
        outbox.enqueue(rt.ledger, request_id=request_id, kind=f"art19_{action}", mail=mail)
        if message_id not in already:
            with rt.ledger.session() as session:
                data = {"vendor": vendor, "contact": contact, "systems": list(names), "action": action}
                append_event(
                    session,
                    request_id=request_id,
                    kind="recipient.notified",
                    data={**data, "message_id": message_id},
                )
    delivery = outbox.deliver(rt.ledger, Mailer(rt.settings.smtp()), request_id=request_id)
    with rt.ledger.session() as session:
        given = [n for n in notices(session, request_id) if n.action == action]
    if delivery.failed or any(n.sent_at is None for n in given):
        raise RetryableError("a recipient notice could not be delivered yet; it stays queued")
    return given


def notices(session: Session, request_id: str) -> list[Notice]:
    """Every Art. 19 notice of the request, with when the SMTP server accepted it (None: not yet)."""
    events = _notified(session, request_id)
    rows = session.execute(
        select(OutboxMail.message_id, OutboxMail.sent_at).where(
            OutboxMail.request_id == request_id, OutboxMail.status == MailStatus.SENT
        )
    )
    sent = {message_id: sent_at for message_id, sent_at in rows}
    return [
        Notice(
            vendor=e.data["vendor"],
            contact=e.data["contact"],
            systems=tuple(e.data["systems"]),
            action=e.data["action"],
            message_id=e.data["message_id"],
            sent_at=sent.get(e.data["message_id"]),
        )
        for e in events
    ]


def _notified(session: Session, request_id: str) -> list[Event]:
    stmt = select(Event).where(Event.request_id == request_id, Event.kind == "recipient.notified")
    return list(session.scalars(stmt.order_by(Event.seq)))


def _message_id(request_id: str, action: str, contact: str) -> str:
    digest = hashlib.sha256(contact.lower().encode()).hexdigest()[:12]
    return f"<{request_id}.art19-{action}.{digest}@dsar-pipeline>"

"""The mail outbox: every mail is written to the ledger first and delivered from there.

Queuing is idempotent by ``Message-ID`` (a re-run queues nothing twice); delivery marks a
mail sent only after the SMTP server accepted it, so an outage delays mail but never loses
it. Recipient, subject and body are stored encrypted: they may name the data subject. Each ledger
step is a :meth:`~dsar.ledger.Ledger.transaction`, re-run whole on a transient database error
(and written so that a re-run records nothing twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from dsar.ledger import Ledger
from dsar.ledger.chain import append_event, lock_request
from dsar.ledger.models import MailStatus, OutboxMail
from integrations.errors import IntegrationError
from integrations.mail import Mail, Mailer

__all__ = ["CLAIM_TIMEOUT", "Delivery", "deliver", "enqueue"]

CLAIM_TIMEOUT = timedelta(minutes=10)  # a deliverer that died while sending; its mail is taken over


@dataclass(frozen=True)
class Delivery:
    sent: int
    failed: int


def enqueue(ledger: Ledger, *, request_id: str | None, kind: str, mail: Mail) -> bool:
    """Queue ``mail`` unless a mail with its Message-ID was queued before; True if queued now."""
    return ledger.transaction(lambda session: _enqueue(ledger, session, request_id, kind, mail))


def _enqueue(ledger: Ledger, session: Session, request_id: str | None, kind: str, mail: Mail) -> bool:
    if request_id:
        lock_request(session, request_id)  # before the insert: parallel tasks queue mail too
    if session.scalar(select(OutboxMail.id).where(OutboxMail.message_id == mail.message_id)):
        return False
    sealed = ledger.keys.cipher.encrypt_json({"to": mail.to, "subject": mail.subject, "body": mail.body})
    session.add(
        OutboxMail(
            message_id=mail.message_id,
            request_id=request_id,
            kind=kind,
            status=MailStatus.PENDING,
            recipient_ciphertext=sealed,
            attempts=0,
            created_at=datetime.now(UTC),
        )
    )
    if request_id:
        append_event(
            session,
            request_id=request_id,
            kind="mail.queued",
            data={"kind": kind, "message_id": mail.message_id},
        )
    return True


def deliver(ledger: Ledger, mailer: Mailer, *, request_id: str | None = None) -> Delivery:
    """Send every unsent mail (of one request, or all); failures stay queued for the next try."""
    sent = failed = 0
    for mail_id in _unsent(ledger, request_id):
        if _deliver_one(ledger, mailer, mail_id):
            sent += 1
        else:
            failed += 1
    return Delivery(sent=sent, failed=failed)


def _unsent(ledger: Ledger, request_id: str | None) -> list[int]:
    stmt = select(OutboxMail.id).where(OutboxMail.status != MailStatus.SENT).order_by(OutboxMail.id)
    if request_id:
        stmt = stmt.where(OutboxMail.request_id == request_id)
    return ledger.transaction(lambda session: list(session.scalars(stmt)))


def _deliver_one(ledger: Ledger, mailer: Mailer, mail_id: int) -> bool:
    mail = _claim(ledger, mail_id)
    if mail is None:
        return True  # sent already, or another deliverer is sending it right now
    try:
        mailer.send(mail)
        error = None
    except IntegrationError as exc:
        error = exc.summary()
    _record_attempt(ledger, mail_id, error)
    return error is None


def _claim(ledger: Ledger, mail_id: int) -> Mail | None:
    """Take the mail for this deliverer alone; a claim older than CLAIM_TIMEOUT was abandoned."""
    now = datetime.now(UTC)
    claimable = or_(
        OutboxMail.status.in_([MailStatus.PENDING, MailStatus.FAILED]),
        and_(OutboxMail.status == MailStatus.SENDING, OutboxMail.claimed_at < now - CLAIM_TIMEOUT),
    )

    def claim(session: Session) -> Mail | None:
        taken = update(OutboxMail).where(OutboxMail.id == mail_id, claimable)
        if session.execute(taken.values(status=MailStatus.SENDING, claimed_at=now)).rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = session.get(OutboxMail, mail_id)
        assert row is not None
        content = ledger.keys.cipher.decrypt_json(row.recipient_ciphertext)
        return Mail(
            to=content["to"], subject=content["subject"], body=content["body"], message_id=row.message_id
        )

    return ledger.transaction(claim)


def _record_attempt(ledger: Ledger, mail_id: int, error: str | None) -> None:
    def record(session: Session) -> None:
        row = session.get(OutboxMail, mail_id)
        assert row is not None
        if row.request_id:
            lock_request(session, row.request_id)
            session.refresh(row)
        if row.status != MailStatus.SENDING:
            return  # recorded already: a re-run whose first commit went through
        row.attempts += 1
        row.status, row.error = (MailStatus.FAILED, error) if error else (MailStatus.SENT, None)
        row.sent_at = None if error else datetime.now(UTC)
        if row.request_id:
            kind = "mail.failed" if error else "mail.sent"
            append_event(
                session,
                request_id=row.request_id,
                kind=kind,
                data={"kind": row.kind, "message_id": row.message_id, "error": error},
            )

    ledger.transaction(record)

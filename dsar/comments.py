"""The ticket comment outbox: every internal note is written to the ledger first and delivered from there.

Queuing is idempotent by a caller's key (the same webhook three times queues one note); delivery
claims a note for one deliverer (a claim older than ``CLAIM_TIMEOUT`` was abandoned and is taken
over), and marks it sent only after the ticketing system took it, so an outage delays notes but
never loses them, and two deliverers never send the same one. Whoever holds a
:data:`Commenter` delivers: the intake right after answering, the daily deadline watch
(:func:`deliver_pending`), or anyone calling :func:`deliver_comments`.

Outcomes are ledger events on the request: ``ticket.commented`` once, when the note was taken;
``ticket.comment_failed`` for each failed attempt, with ``retry`` telling whether the note stays
pending (a retryable failure) or was given up (the ticketing system refused it for good, e.g. an
unknown ticket: a human must look). Bodies are stored encrypted; errors are PII-free.

At least once, not exactly once, when a deliverer dies between Zendesk's answer and the ledger's
record: the claim expires and the note goes again (a duplicate note beats a lost one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dsar.ledger import Ledger
from dsar.ledger.chain import append_event, lock_request
from dsar.ledger.models import MailStatus, OutboxComment
from dsar.outbox import Delivery
from dsar.runtime import Runtime
from integrations.errors import AuthError, IntegrationError, PermanentError
from integrations.ticketing import ZendeskTickets

__all__ = [
    "CLAIM_TIMEOUT",
    "ZENDESK",
    "Commenter",
    "Delivery",
    "deliver_comments",
    "deliver_pending",
    "enqueue_comment",
]

log = logging.getLogger(__name__)

Commenter = Callable[[str, str], None]  # (Zendesk ticket id, text): an internal note on the ticket
ZENDESK = "zendesk:"
CLAIM_TIMEOUT = timedelta(minutes=10)  # a deliverer that died while commenting; its note is taken over
COMMENTED, COMMENT_FAILED = "ticket.commented", "ticket.comment_failed"


def enqueue_comment(
    ledger: Ledger, *, key: str, request_id: str | None, ticket_ref: str, kind: str, body: str
) -> bool:
    """Queue ``body`` as a note on ``ticket_ref`` unless ``key`` was queued before; True if queued now."""

    def queue(session: Session) -> bool:
        if request_id:
            lock_request(session, request_id)  # repeated webhooks queue one after the other
        if session.scalar(select(OutboxComment.id).where(OutboxComment.key == key)):
            return False
        session.add(
            OutboxComment(
                key=key,
                request_id=request_id,
                ticket_ref=ticket_ref,
                kind=kind,
                body_ciphertext=ledger.keys.cipher.encrypt_json({"body": body}),
                status=MailStatus.PENDING,
                attempts=0,
                created_at=datetime.now(UTC),
            )
        )
        session.flush()  # a concurrent twin without a request row to lock fails here, not at commit
        return True

    try:
        return ledger.transaction(queue)
    except IntegrityError:  # the same key, queued by a concurrent process in the meantime
        return False


def deliver_comments(
    ledger: Ledger, comment: Commenter, *, request_id: str | None = None, key: str | None = None
) -> Delivery:
    """Send every pending note (of one request, one key, or all); failures stay pending for the next try."""
    sent = failed = 0
    for comment_id in _pending(ledger, request_id, key):
        outcome = _deliver_one(ledger, comment, comment_id)
        sent, failed = sent + (outcome is True), failed + (outcome is False)
    return Delivery(sent=sent, failed=failed)


def deliver_pending(rt: Runtime) -> Delivery:
    """Deliver every pending note with the Zendesk client the settings describe (none: nothing to do)."""
    s = rt.settings
    if not s.ticketing_zendesk_url or not s.ticketing_zendesk_email or s.ticketing_zendesk_token is None:
        return Delivery(sent=0, failed=0)
    tickets = ZendeskTickets(
        s.ticketing_zendesk_url,
        s.ticketing_zendesk_email,
        s.ticketing_zendesk_token.get_secret_value(),
        rt.http_policy,
        rt.transports.get(ZendeskTickets.system),
    )
    try:
        return deliver_comments(rt.ledger, tickets.comment)
    finally:
        tickets.close()


def _pending(ledger: Ledger, request_id: str | None, key: str | None) -> list[int]:
    stmt = select(OutboxComment.id).where(OutboxComment.status.in_([MailStatus.PENDING, MailStatus.SENDING]))
    if request_id:
        stmt = stmt.where(OutboxComment.request_id == request_id)
    if key:
        stmt = stmt.where(OutboxComment.key == key)
    return ledger.transaction(lambda session: list(session.scalars(stmt.order_by(OutboxComment.id))))


def _deliver_one(ledger: Ledger, comment: Commenter, comment_id: int) -> bool | None:
    """True sent, False failed (pending again or given up), None: not ours to send."""
    claimed = _claim(ledger, comment_id)
    if claimed is None:
        return None  # sent already, or another deliverer is sending it right now
    ticket_ref, body = claimed
    error: str | None = None
    retry = False
    try:
        if not ticket_ref.startswith(ZENDESK):
            raise ValueError("only Zendesk tickets take notes")
        comment(ticket_ref.removeprefix(ZENDESK), body)
    except Exception as exc:  # recorded PII-free; the original may carry the ticket's data
        error, retry = _summary(exc), _retryable(exc)
        log.warning("comments: note %d failed (%s)", comment_id, type(exc).__name__)
        _record_attempt(ledger, comment_id, error=error, cause=type(exc).__name__, retry=retry)
        return False
    _record_attempt(ledger, comment_id, error=None, cause=None, retry=False)
    return True


def _claim(ledger: Ledger, comment_id: int) -> tuple[str, str] | None:
    """Take the note for this deliverer alone: (ticket ref, body), or None if it is not claimable."""
    now = datetime.now(UTC)
    claimable = or_(
        OutboxComment.status == MailStatus.PENDING,
        and_(OutboxComment.status == MailStatus.SENDING, OutboxComment.claimed_at < now - CLAIM_TIMEOUT),
    )

    def claim(session: Session) -> tuple[str, str] | None:
        taken = update(OutboxComment).where(OutboxComment.id == comment_id, claimable)
        if session.execute(taken.values(status=MailStatus.SENDING, claimed_at=now)).rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = session.get_one(OutboxComment, comment_id)
        return row.ticket_ref, str(ledger.keys.cipher.decrypt_json(row.body_ciphertext)["body"])

    return ledger.transaction(claim)


def _record_attempt(
    ledger: Ledger, comment_id: int, *, error: str | None, cause: str | None, retry: bool
) -> None:
    """Mark the note sent, pending again or given up, and add the outcome to the request's chain."""

    def record(session: Session) -> None:
        row = session.get_one(OutboxComment, comment_id)
        if row.request_id:
            lock_request(session, row.request_id)
        session.refresh(row)
        if row.status != MailStatus.SENDING:
            return  # recorded already (a retried transaction whose first commit went through)
        row.attempts += 1
        row.error = error
        if error is None:
            row.status, row.sent_at = MailStatus.SENT, datetime.now(UTC)
        else:
            row.status = MailStatus.PENDING if retry else MailStatus.FAILED
        if row.request_id:
            data: dict[str, object] = {"ticket": row.ticket_ref, "note": row.kind}
            if error is not None:
                data |= {"error": cause, "retry": retry, "attempts": row.attempts}
            kind = COMMENTED if error is None else COMMENT_FAILED
            append_event(session, request_id=row.request_id, kind=kind, data=data)

    ledger.transaction(record)


def _retryable(exc: Exception) -> bool:
    """Whether trying again later may help: not for a refusal (unknown ticket, invalid id).

    Rejected credentials (AuthError) are retried: an operator fixes the token, the note goes.
    """
    if isinstance(exc, AuthError):
        return True
    return not isinstance(exc, PermanentError | ValueError)


def _summary(exc: Exception) -> str:
    """A PII-free line: the integration's own summary, else the class name."""
    if isinstance(exc, IntegrationError):
        return exc.summary()
    return type(exc).__name__

"""The identity steps a flow or the deadline watch takes, over the ledger and the mail server.

No Prefect here: :mod:`tasks.identity` wraps these as tasks, and the deadline watch chases
unanswered challenges with them (one reminder, then the request is closed with a letter).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dsar.calendar import local_date
from dsar.identity.answers import WAIT_ENDED, lock_request
from dsar.identity.checks import (
    IDENTITY_SUSPENSION,
    close_suspension,
    is_verified,
    mark_failed,
    mark_verified,
    open_challenge,
    pending_check,
)
from dsar.identity.email_code import new_code
from dsar.identity.policy import choose_method
from dsar.identity.subject_mail import SubjectLetter, send_challenge, send_letter
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import IdentityCheck, IdentityStatus, Request, RequestStatus, Suspension
from dsar.runtime import Runtime
from dsar.settings import IdentityMethod

__all__ = [
    "Chase",
    "ask_subject",
    "chase_unanswered",
    "close_unconfirmed",
    "method_for",
    "record_review",
    "wait_for_subject",
]


def method_for(rt: Runtime, request_id: str, *, without_operator: bool = False) -> IdentityMethod | None:
    """None when the requester is confirmed already; else the method the policy picks."""
    with rt.ledger.session() as session:
        if is_verified(session, request_id):
            return None
        request = repo.get_request(session, request_id)
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
        request_type = request.type.value
    return choose_method(rt.settings, request_type, subject, reach_subject=without_operator)


def ask_subject(rt: Runtime, request_id: str, method: IdentityMethod, *, reminder: bool = False) -> int:
    """Send the subject a challenge (unless one is still open); the clock stops. Returns its id."""
    now = datetime.now(UTC)
    code = new_code() if method == "email_code" else None
    valid_for = (
        timedelta(seconds=rt.settings.identity_code_valid_s)
        if code
        else timedelta(days=rt.settings.identity_link_valid_days)
    )
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        waiting = pending_check(session, request_id, now)
        if waiting is not None and waiting.method == method and not reminder:
            request.checkpoint = "verifying_identity"  # a re-run: the subject has their link already
            return waiting.id
        challenge = open_challenge(
            session,
            keys=rt.ledger.keys,
            request=request,
            method=method,
            valid_for=valid_for,
            now=now,
            code=code,
        )
        request.checkpoint = "verifying_identity"
        if reminder:
            session.get_one(IdentityCheck, challenge.check_id).reminded_at = now
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
        language = request.language
    assert subject.email  # the policy sends challenges only to an address on record
    try:
        send_challenge(
            rt,
            request_id=request_id,
            to=subject.email,
            language=language,
            challenge=challenge,
            expires=now + valid_for,
            reminder=reminder,
        )
    except Exception:
        with rt.ledger.session() as session:  # withdrawn: the retry sends a new one
            check = session.get_one(IdentityCheck, challenge.check_id)
            mark_failed(session, check, reason="mail_not_sent", now=datetime.now(UTC), final=True)
        raise
    return challenge.check_id


def wait_for_subject(rt: Runtime, request_id: str) -> bool:
    """Poll the ledger for the subject's answer; after ``identity_wait_s`` stop waiting (False).

    Stopping is recorded under the request's row lock, so an answer that lands at that moment
    either is seen here or sees the checkpoint and starts the flow again: never both, never neither.
    """
    deadline = time.monotonic() + rt.settings.identity_wait_s
    while True:
        with rt.ledger.session() as session:
            if is_verified(session, request_id):
                return True
        if time.monotonic() >= deadline:
            break
        time.sleep(rt.settings.identity_poll_s)
    with rt.ledger.session() as session:
        request = lock_request(session, request_id)
        if is_verified(session, request_id):
            return True
        request.checkpoint = WAIT_ENDED
        append_event(session, request_id=request_id, kind="identity.wait_ended", data={})
    return False


def record_review(ledger: Ledger, request_id: str, *, decision: str, operator: str, reason: str) -> str:
    """An operator's identity decision: approve, reject (the request is closed), or ask the subject.

    Also how an operator records a verification done before the request was registered (a
    customer logged in to the portal, a check in the ticket): ``decision="approve"``.
    """
    if decision not in ("approve", "reject", "ask_subject"):
        raise ValueError(f"unknown identity decision {decision!r}")
    now = datetime.now(UTC)
    with ledger.session() as session:
        request = repo.get_request(session, request_id)
        check = IdentityCheck(
            request_id=request_id,
            method="operator",
            status=IdentityStatus.PENDING,
            attempts=0,
            created_at=now,
            expires_at=now,
        )
        session.add(check)
        session.flush()
        append_event(
            session,
            request_id=request_id,
            kind="identity.operator_review",
            data={"check": check.id, "decision": decision, "operator": operator, "reason": reason},
        )
        if decision == "approve":
            mark_verified(session, check, now=now, decided_by=operator, matched_by="operator_review")
        elif decision == "reject":
            check.decided_by = operator
            mark_failed(session, check, reason="operator_rejected", now=now, final=True)
            _close(session, request, local_date(now), "identity_rejected", "rejected by an operator")
        else:
            check.status, check.completed_at, check.decided_by = IdentityStatus.EXPIRED, now, operator
            check.reason = "more_information_needed"
    return decision


@dataclass(frozen=True)
class Chase:
    reminded: list[str]
    closed: list[str]


def chase_unanswered(rt: Runtime, today: date) -> Chase:
    """One reminder after ``identity_reminder_days``; closed after ``identity_close_after_days``."""
    remind_before = today - timedelta(days=rt.settings.identity_reminder_days)
    close_before = today - timedelta(days=rt.settings.identity_close_after_days)
    with rt.ledger.session() as session:
        stmt = (
            select(Request.id, Suspension.started_on)
            .join(Suspension, Suspension.request_id == Request.id)
            .where(
                Request.status == RequestStatus.AWAITING_SUBJECT,
                Suspension.ended_on.is_(None),
                Suspension.reason == IDENTITY_SUSPENSION,
                Suspension.started_on <= remind_before,
            )
        )
        waiting = list(session.execute(stmt))
        reminded_before = set(
            session.scalars(
                select(IdentityCheck.request_id).where(
                    IdentityCheck.request_id.in_([r for r, _ in waiting]),
                    IdentityCheck.reminded_at.is_not(None),
                )
            )
        )
    reminded, closed = [], []
    for request_id, started_on in waiting:
        if started_on <= close_before:
            close_unconfirmed(rt, request_id, today)
            closed.append(request_id)
        elif request_id not in reminded_before:
            method = method_for(rt, request_id, without_operator=True)
            if method is not None and method != "operator":
                ask_subject(rt, request_id, method, reminder=True)
                reminded.append(request_id)
    return Chase(reminded=reminded, closed=closed)


def close_unconfirmed(rt: Runtime, request_id: str, today: date) -> None:
    """Close a request whose subject never confirmed their identity, and tell them (reopenable)."""
    now = datetime.now(UTC)
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        for check in session.scalars(
            select(IdentityCheck).where(
                IdentityCheck.request_id == request_id, IdentityCheck.status == IdentityStatus.PENDING
            )
        ):
            mark_failed(session, check, reason="no_answer", now=now, final=True)
        _close(session, request, today, "identity_unconfirmed", "no answer from the subject")
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
        language = request.language
        last_check = session.scalar(
            select(func.max(IdentityCheck.id)).where(IdentityCheck.request_id == request_id)
        )
    if subject.email:
        send_letter(
            rt,
            SubjectLetter("identity_unconfirmed", request_id),
            to=subject.email,
            language=language,
            check_id=last_check or 0,
        )


def _close(session: Session, request: Request, today: date, checkpoint: str, why: str) -> None:
    """Close a request whose requester was not confirmed; the clock's interval stays recorded."""
    close_suspension(session, request, today)
    repo.set_status(
        session,
        request=request,
        status=RequestStatus.CLOSED,
        checkpoint=checkpoint,
        note=f"identity not confirmed: {why}",
    )

"""Identity checks in the ledger: open a challenge, find it again, record how it ended.

A challenge is reached through a personal link whose token is stored only as a keyed hash;
e-mail codes and OIDC states likewise. Opening a challenge supersedes older pending ones of
the same request and stops the statutory clock; a verification restarts it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar.calendar import local_date
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, as_utc
from dsar.ledger.models import IdentityCheck, IdentityStatus, Request, RequestStatus, Suspension

__all__ = [
    "IDENTITY_SUSPENSION",
    "Challenge",
    "close_suspension",
    "find_by_link",
    "find_by_state",
    "is_verified",
    "mark_failed",
    "mark_verified",
    "open_challenge",
    "open_suspension",
    "pending_check",
    "secret_hash",
]

IDENTITY_SUSPENSION = "identity: waiting for the data subject (EDPB 01/2022 §159)"


@dataclass(frozen=True)
class Challenge:
    """What the subject receives (only once, by mail); the ledger keeps hashes of it."""

    check_id: int
    method: str
    link_token: str
    code: str | None = None

    def __repr__(self) -> str:  # the token and code are secrets
        return f"Challenge({self.check_id}, {self.method})"


def secret_hash(keys: repo.Keys, purpose: str, value: str) -> str:
    """Keyed hash of a secret, separated by purpose so a code cannot stand in for a link."""
    hashed = keys.hash(f"{purpose}:{value}")
    assert hashed is not None
    return hashed


def is_verified(session: Session, request_id: str) -> bool:
    stmt = select(IdentityCheck.id).where(
        IdentityCheck.request_id == request_id, IdentityCheck.status == IdentityStatus.VERIFIED
    )
    return session.scalars(stmt.limit(1)).first() is not None


def pending_check(session: Session, request_id: str, now: datetime) -> IdentityCheck | None:
    """The request's newest challenge still waiting for the subject, if it has not expired."""
    stmt = (
        select(IdentityCheck)
        .where(IdentityCheck.request_id == request_id, IdentityCheck.status == IdentityStatus.PENDING)
        .order_by(IdentityCheck.id.desc())
    )
    check = session.scalars(stmt.limit(1)).first()
    if check is None or as_utc(check.expires_at) <= now:
        return None
    return check


def open_challenge(
    session: Session,
    *,
    keys: repo.Keys,
    request: Request,
    method: str,
    valid_for: timedelta,
    now: datetime,
    code: str | None = None,
) -> Challenge:
    """A new challenge for the subject; older pending ones are superseded, the clock stops."""
    for old in session.scalars(
        select(IdentityCheck).where(
            IdentityCheck.request_id == request.id, IdentityCheck.status == IdentityStatus.PENDING
        )
    ):
        old.status, old.reason, old.completed_at = IdentityStatus.EXPIRED, "superseded", now
    token = secrets.token_urlsafe(24)
    check = IdentityCheck(
        request_id=request.id,
        method=method,
        status=IdentityStatus.PENDING,
        link_hash=secret_hash(keys, "link", token),
        code_hash=secret_hash(keys, f"code:{token}", code) if code else None,
        attempts=0,
        created_at=now,
        expires_at=now + valid_for,
    )
    session.add(check)
    session.flush()
    open_suspension(session, request, local_date(now))
    repo.set_status(
        session, request=request, status=RequestStatus.AWAITING_SUBJECT, note=f"identity: {method}"
    )
    append_event(
        session,
        request_id=request.id,
        kind="identity.requested",
        data={"method": method, "check": check.id, "expires_at": check.expires_at.isoformat()},
    )
    return Challenge(check_id=check.id, method=method, link_token=token, code=code)


def find_by_link(session: Session, keys: repo.Keys, token: str) -> IdentityCheck | None:
    """The challenge a personal link belongs to (row-locked: answers are serialised)."""
    stmt = select(IdentityCheck).where(IdentityCheck.link_hash == secret_hash(keys, "link", token))
    return session.scalars(stmt.with_for_update()).first()


def find_by_state(session: Session, keys: repo.Keys, state: str) -> IdentityCheck | None:
    stmt = select(IdentityCheck).where(IdentityCheck.state_hash == secret_hash(keys, "state", state))
    return session.scalars(stmt.with_for_update()).first()


def mark_verified(
    session: Session,
    check: IdentityCheck,
    *,
    now: datetime,
    level: str | None = None,
    matched_by: str | None = None,
    decided_by: str | None = None,
) -> None:
    """The subject is confirmed: record how, and let the clock run again."""
    check.status, check.completed_at = IdentityStatus.VERIFIED, now
    check.level, check.matched_by, check.decided_by, check.reason = level, matched_by, decided_by, None
    request = repo.get_request(session, check.request_id)
    close_suspension(session, request, local_date(now))
    append_event(
        session,
        request_id=check.request_id,
        kind="identity.verified",
        data={
            "method": check.method,
            "check": check.id,
            "level": level,
            "matched_by": matched_by,
            "decided_by": decided_by,
        },
    )


def mark_failed(session: Session, check: IdentityCheck, *, reason: str, now: datetime, final: bool) -> None:
    """A failed attempt (reason: a short PII-free code); ``final`` ends the challenge."""
    check.attempts += 1
    check.reason = reason
    if final:
        check.status = IdentityStatus.REJECTED if reason == "operator_rejected" else IdentityStatus.EXPIRED
        check.completed_at = now
    append_event(
        session,
        request_id=check.request_id,
        kind="identity.failed",
        data={"method": check.method, "check": check.id, "reason": reason, "final": final},
    )


def open_suspension(session: Session, request: Request, today: date) -> None:
    """Stop the clock (once: an open suspension stays the one)."""
    if not any(s.ended_on is None for s in request.suspensions):
        suspension = Suspension(request_id=request.id, started_on=today, reason=IDENTITY_SUSPENSION)
        request.suspensions.append(suspension)  # cascades into the session
        append_event(session, request_id=request.id, kind="clock.suspended", data={"from": today.isoformat()})


def close_suspension(session: Session, request: Request, today: date) -> None:
    """Let the clock run again; the interval stays recorded."""
    for suspension in request.suspensions:
        if suspension.ended_on is None:
            suspension.ended_on = max(today, suspension.started_on)
            append_event(
                session,
                request_id=request.id,
                kind="clock.resumed",
                data={"from": suspension.started_on.isoformat(), "to": suspension.ended_on.isoformat()},
            )

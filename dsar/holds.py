"""Legal holds (GDPR Art. 17(3)(e)): an operator keeps a request's data for legal claims.

A hold names the request, optionally one system (None: every system), the claim's reference
and the operator. While it lasts, erasure keeps that system's data ("retained, legal hold")
and the retention job leaves it alone; when it is released, the retention job erases what the
hold kept. Placing and releasing are ledger events of the request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dsar.errors import BadInput
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import LegalHold

__all__ = ["active_hold", "active_holds", "place_hold", "release_hold"]


def place_hold(
    session: Session, *, request_id: str, system: str | None, reason: str, operator: str, known: list[str]
) -> LegalHold:
    """Hold the request's data in ``system`` (or everywhere) for a legal claim."""
    repo.get_request(session, request_id)  # raises for an unknown request
    if system is not None and system not in known:
        raise BadInput(f"unknown system {system!r} (known: {', '.join(known)})")
    reason, operator = " ".join(reason.split()), " ".join(operator.split())
    if len(reason) < 8 or len(operator) < 2:
        raise BadInput("a hold needs the claim's reference (8+ characters) and the operator's name")
    hold = LegalHold(
        request_id=request_id,
        system=system,
        reason=reason[:500],
        placed_by=operator[:200],
        placed_at=datetime.now(UTC),
    )
    session.add(hold)
    session.flush()
    append_event(
        session,
        request_id=request_id,
        kind="hold.placed",
        data={"hold": hold.id, "system": system, "reason": hold.reason, "operator": hold.placed_by},
    )
    return hold


def release_hold(session: Session, *, hold_id: int, operator: str) -> LegalHold:
    """End a hold; what it kept becomes due for erasure by the retention job."""
    hold = session.get(LegalHold, hold_id, with_for_update=True)
    if hold is None:
        raise BadInput(f"no legal hold #{hold_id}")
    if hold.released_at is not None:
        raise BadInput(f"legal hold #{hold_id} was released already")
    operator = " ".join(operator.split())
    if len(operator) < 2:
        raise BadInput("name the operator who releases the hold")
    hold.released_at, hold.released_by = datetime.now(UTC), operator[:200]
    append_event(
        session,
        request_id=hold.request_id,
        kind="hold.released",
        data={"hold": hold.id, "system": hold.system, "operator": hold.released_by},
    )
    return hold


def active_holds(session: Session, request_id: str) -> list[LegalHold]:
    stmt = select(LegalHold).where(LegalHold.request_id == request_id, LegalHold.released_at.is_(None))
    return list(session.scalars(stmt.order_by(LegalHold.id)))


def active_hold(session: Session, request_id: str, system: str) -> LegalHold | None:
    """The oldest hold in force on ``system`` (a hold on every system counts)."""
    stmt = select(LegalHold).where(
        LegalHold.request_id == request_id,
        LegalHold.released_at.is_(None),
        or_(LegalHold.system.is_(None), LegalHold.system == system),
    )
    return session.scalars(stmt.order_by(LegalHold.id)).first()

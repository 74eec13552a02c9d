"""Tasks that carry out rectification, restriction and objection in one system, once.

Each system is asked through the ability it has (:mod:`integrations.rights`); a system without
it gets a form for an operator, who does it by hand and answers "done" or "not held". A step
is recorded as a ``system.applied`` event (right, method, counts), which is also what makes a
re-run skip it: nothing is corrected, restricted or unsubscribed twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import letters, runtime, suppression
from dsar.calendar import OSLO
from dsar.errors import BadInput
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Document, Event, SystemResult, SystemStatus
from integrations.base import Subject, System
from integrations.errors import NeedsOperator
from integrations.rights import Corrections, Rectifies, Restricts, RightOutcome, Suppresses
from tasks.systems import call_system, record_step, system_row, system_step

__all__ = [
    "Right",
    "apply_right",
    "confirm_to_subject",
    "ready_to_lift",
    "record_lifted",
    "record_suppression",
]

Right = Literal["rectification", "restriction", "restriction_lifted", "objection"]

_BY_HAND = {
    "rectification": "Correct the person's data in this system by hand to the values in the case",
    "restriction": "Mark the person's data in this system as restricted (stored, not processed)",
    "restriction_lifted": "Remove the restriction mark from the person's data in this system",
    "objection": "Unsubscribe the person from all direct marketing in this system",
}


@system_step("apply")
def apply_right(request_id: str, system: str, right: Right) -> dict[str, int] | None:
    """Carry out ``right`` for the subject in one system; None when an operator answers for it."""
    rt = runtime.current()
    register = rt.spec(system).register
    with system_row(rt, request_id, system) as (session, row):
        if _applied_before(session, request_id, system, right):
            return {}
        if right == "objection" and not (register and register.direct_marketing):
            row.status, row.error = SystemStatus.NOT_APPLICABLE, None  # no direct marketing here
            _record(session, request_id, system, right, "not-applicable", {})
            return {}
        if right != "objection" and row.looked_up_at is not None and not row.counts:
            return {}  # the look-up found nothing here: nothing to correct or restrict
        details = repo.load_details(session, keys=rt.ledger.keys, request_id=request_id)
    fixed = details.get("corrections") or {}
    corrections = Corrections(**fixed) if right == "rectification" else None
    outcome = call_system(
        rt, request_id, system, right, lambda client, subject: _carry_out(client, subject, right, corrections)
    )
    if outcome is None:
        return None
    counts = {category: n for category, n in outcome.counts.items() if n}

    def write(session: Session, row: SystemResult) -> None:
        row.status, row.method, row.error = SystemStatus.APPLIED, outcome.method[:200], None
        row.attempts += 1
        _record(session, request_id, system, right, outcome.method, counts)

    record_step(rt, request_id, system, write)  # the system changed: record it, whatever the database does
    get_run_logger().info("%s: %s applied to %d records", system, right, outcome.total)
    return counts


def _carry_out(
    client: System, subject: Subject, right: Right, corrections: Corrections | None
) -> RightOutcome:
    if right == "rectification" and isinstance(client, Rectifies):
        assert corrections is not None
        return client.rectify(subject, corrections)
    if right == "restriction" and isinstance(client, Restricts):
        return client.restrict(subject)
    if right == "restriction_lifted" and isinstance(client, Restricts):
        return client.lift_restriction(subject)
    if right == "objection" and isinstance(client, Suppresses):
        return client.suppress(subject)
    raise NeedsOperator(
        f"{client.name} has no API for {right}",
        system=client.name,
        instructions=getattr(client, "instructions", None) or _BY_HAND[right],
        processor_contact=getattr(client, "processor_contact", None),
    )


def _applied_before(session: Session, request_id: str, system: str, right: Right) -> bool:
    """An earlier run carried the right out here (by API or by an operator's hand)."""
    stmt = select(Event.data).where(
        Event.request_id == request_id, Event.kind.in_(("system.applied", "system.operator_answered"))
    )
    for data in session.scalars(stmt):
        if data.get("system") == system and right in (data.get("right"), data.get("step")):
            return True
    return False


def _record(
    session: Session, request_id: str, system: str, right: Right, method: str, counts: dict[str, int]
) -> None:
    append_event(
        session,
        request_id=request_id,
        kind="system.applied",
        data={
            "system": system,
            "right": right,
            "method": method,
            "counts": counts,
            "at": datetime.now(UTC).isoformat(),
        },
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def record_suppression(request_id: str) -> int:
    """Keep the objection (keyed hashes) so it survives a re-import of old lists."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
        details = repo.load_details(session, keys=rt.ledger.keys, request_id=request_id)
        reason: suppression.Reason = "consent_withdrawn" if details.get("withdraws_consent") else "objection"
        return suppression.suppress(
            session, keys=rt.ledger.keys, subject=subject, reason=reason, request_id=request_id
        )


_LETTER_OUTCOME = {
    SystemStatus.APPLIED: "applied",
    SystemStatus.MANUAL: "manual",
    SystemStatus.NONE: "none",
    SystemStatus.NOT_APPLICABLE: "not_applicable",
}


@task(cache_policy=NO_CACHE, persist_result=False)
def confirm_to_subject(request_id: str) -> str:
    """The letter that tells the subject what was done where; written once (a re-run reuses it)."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        made = session.scalars(
            select(Document.path).where(
                Document.request_id == request_id, Document.kind == "rights_confirmation"
            )
        ).first()
        outcomes = [(r.system, _LETTER_OUTCOME.get(r.status, "none")) for r in request.systems]
        corrected = (
            repo.load_details(session, keys=rt.ledger.keys, request_id=request_id).get("corrections") or {}
        )
    if made is not None:
        return made
    today = datetime.now(OSLO).date()
    # A corrected e-mail address is where the subject now reads their mail.
    return letters.confirm_right(rt, request_id, outcomes=outcomes, today=today, to=corrected.get("email"))


@task(cache_policy=NO_CACHE, persist_result=False)
def ready_to_lift(request_id: str, operator: str) -> None:
    """A restriction is lifted only after the subject was told (Art. 18(3)) and the date has come."""
    rt = runtime.current()
    today = datetime.now(OSLO).date()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        if request.type.value != "restriction" or request.checkpoint != "restricted":
            raise BadInput(f"{request_id} is not a carried-out restriction")
        stmt = select(Event.data).where(
            Event.request_id == request_id, Event.kind == "restriction.lift_announced"
        )
        # The latest letter is what the subject was told last (a new one may move the day).
        announced = [date.fromisoformat(d["lift_on"]) for d in session.scalars(stmt.order_by(Event.seq))]
        if not announced:
            raise BadInput(f"tell the subject first: dsar restriction announce-lift {request_id} --on DATE")
        if announced[-1] > today:
            raise BadInput(f"the subject was told the restriction ends on {announced[-1]}; wait until then")
        append_event(session, request_id=request_id, kind="restriction.lifting", data={"operator": operator})


@task(cache_policy=NO_CACHE, persist_result=False)
def record_lifted(request_id: str) -> None:
    """The restriction is over: the request's checkpoint says so, and a second lift is refused."""
    with runtime.current().ledger.session() as session:
        request = repo.get_request(session, request_id)
        request.checkpoint = "lifted"
        append_event(session, request_id=request_id, kind="restriction.lifted", data={})

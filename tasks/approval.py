"""Tasks of the operator's approval of an erasure plan: what to show, and recording the decision."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from dsar import runtime
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Event, RequestStatus

__all__ = ["approval_text", "approved_before", "record_approval", "record_dry_run"]

Decision = Literal["approve", "reject"]


@task(cache_policy=NO_CACHE, persist_result=False)
def approved_before(request_id: str) -> bool:
    """An earlier run's plan was approved: a resumed erasure asks no one twice."""
    with runtime.current().ledger.session() as session:
        stmt = select(Event.kind).where(
            Event.request_id == request_id, Event.kind.in_(("erasure.approved", "erasure.rejected"))
        )
        last = session.scalars(stmt.order_by(Event.seq.desc()).limit(1)).first()
    return last == "erasure.approved"


@task(cache_policy=NO_CACHE, persist_result=False)
def approval_text(request_id: str, plan: dict[str, dict[str, object]]) -> str:
    """The form's description: the request, the plan's counts and actions, never a value."""
    lines = [
        f"**Erasure `{request_id}`**: approve the plan below, or reject it (the request then waits "
        "for you; refuse it with `dsar refuse` or run it again).",
        "",
        "The plan is also the artifact *erasure-plan* of this run. Counts only; nothing is erased yet.",
        "",
    ]
    for system, entry in sorted(plan.items()):
        categories = entry["categories"]
        assert isinstance(categories, list)
        held = f" (legal hold #{entry['hold']})" if entry["hold"] else ""
        parts = [
            f"{c['category']} {c['count']} {c['action']}" + (f" until {c['until']}" if c["until"] else "")
            for c in categories
        ]
        lines.append(f"- **{system}**{held}: " + "; ".join(parts))
    if not plan:
        lines.append("- no system holds anything on the person: nothing will be erased")
    return "\n".join(lines)


@task(cache_policy=NO_CACHE, persist_result=False)
def record_approval(request_id: str, decision: Decision, operator: str, reason: str) -> None:
    """Record who approved or rejected the plan; a rejected erasure waits for an operator."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        data = {"operator": operator, "reason": reason}
        kind = "erasure.approved" if decision == "approve" else "erasure.rejected"
        append_event(session, request_id=request_id, kind=kind, data=data)
        if decision == "reject":
            repo.set_status(
                session,
                request=repo.get_request(session, request_id),
                status=RequestStatus.AWAITING_OPERATOR,
                checkpoint="erasure_rejected",
                note=f"plan rejected by {operator}",
            )


@task(cache_policy=NO_CACHE, persist_result=False)
def record_dry_run(request_id: str) -> None:
    """A dry run stops after the plan; the request stays open for the real run."""
    with runtime.current().ledger.session() as session:
        append_event(session, request_id=request_id, kind="erasure.dry_run", data={})

"""Tasks that plan an erasure, erase the subject from one system, and prove it by looking again.

What a system keeps on purpose is recorded in ``retained_data`` with its legal basis and
until-date from the register's retention rules (or the legal hold that kept it); a system that
keeps a category no rule explains is a failure, never a quiet "retained".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import holds, runtime
from dsar.calendar import OSLO
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, lock_request
from dsar.ledger.models import RetainedData, SystemResult, SystemStatus
from dsar.retention import SystemPlan, hold_basis, plan_system, rule_for
from dsar.runtime import Runtime
from integrations.errors import RetryableError
from tasks.common import StepFailed, step_failure
from tasks.systems import call_system, record_failure, record_step, system_row, system_step

__all__ = ["erase_system", "plan_erasure", "verify_erasure"]


@task(cache_policy=NO_CACHE, persist_result=False)
def plan_erasure(request_id: str) -> dict[str, Any]:
    """What erasure will do in each system, by category and count: recorded and shown to operators."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        plans = [system_plan(rt, session, row) for row in request.systems if row.counts]
        summary = {
            plan.system: {
                "hold": plan.hold_id,
                "categories": [
                    {
                        "category": c.category,
                        "count": c.count,
                        "action": c.action,
                        "until": c.until.isoformat() if c.until else None,
                    }
                    for c in plan.categories
                ],
            }
            for plan in plans
        }
        append_event(session, request_id=request_id, kind="erasure.planned", data={"systems": summary})
    create_markdown_artifact(
        key=f"{request_id.lower()}-erasure-plan",
        markdown=_plan_markdown(request_id, plans),
        description=request_id,
    )
    return summary


def system_plan(rt: Runtime, session: Session, row: SystemResult) -> SystemPlan:
    """The plan for one system from its look-up, the register's retention rules and any legal hold."""
    hold = holds.active_hold(session, row.request_id, row.system)
    register = rt.spec(row.system).register
    return plan_system(
        row.system,
        register.retention_rules if register else (),
        row.counts,
        erased_on=_today(),
        year_end=rt.settings.year_end,
        hold=(hold.id, hold.reason) if hold else None,
    )


def _plan_markdown(request_id: str, plans: list[SystemPlan]) -> str:
    lines = [
        f"# Erasure plan `{request_id}`",
        "",
        "Counts only. *retain* keeps the records on the basis shown until the date; *hold* keeps the "
        "whole system while a legal hold lasts; everything else is erased or anonymised.",
        "",
        "| system | category | records | action | basis | until |",
        "|---|---|---|---|---|---|",
    ]
    for plan in plans:
        for c in plan.categories:
            until = c.until.isoformat() if c.until else ("while held" if c.action == "hold" else "-")
            lines.append(
                f"| {plan.system} | {c.category} | {c.count} | {c.action} | {c.basis or '-'} | {until} |"
            )
    if not plans:
        lines.append("| - | - | 0 | nothing found | - | - |")
    return "\n".join(lines)


@system_step("erase")
def erase_system(request_id: str, system: str) -> dict[str, int] | None:
    """Erase the subject from one system, once; systems that hold nothing are left alone."""
    rt = runtime.current()
    with system_row(rt, request_id, system) as (session, row):
        planned = row.looked_up_at is not None
        if planned and (
            not row.counts or (row.erased_at is not None and row.status is not SystemStatus.FAILED)
        ):
            return dict(row.erased_counts)  # nothing to erase, or done by an earlier run
        hold = holds.active_hold(session, request_id, system) if planned else None
        if hold is not None:  # Art. 17(3)(e): kept whole, findable, until the hold is released
            row.status, row.method, row.error = SystemStatus.RETAINED, "legal-hold", None
            row.retained_counts = dict(row.counts)
            basis = hold_basis(hold.id, hold.reason)
            _keep(session, request_id, system, row.counts, lambda _: (basis, None), hold_id=hold.id)
            append_event(
                session, request_id=request_id, kind="system.held", data={"system": system, "hold": hold.id}
            )
            return {}
    if not planned:  # refused outside the row's transaction, which holds the ledger's write lock
        _refuse(rt, request_id, system, "erase", "erasure before look-up")
    outcome = call_system(rt, request_id, system, "erase", lambda client, subject: client.erase(subject))
    if outcome is None:
        return None  # an operator answers for this system
    erased = {category: n for category, n in outcome.counts.items() if n}
    register = rt.spec(system).register
    rules = register.retention_rules if register else ()
    today = _today()

    def basis_until(category: str) -> tuple[str, date | None] | None:
        rule = rule_for(rules, category)
        if rule is None or rule.action != "retain":
            return None
        return rule.legal_basis, rule.until(today, rt.settings.year_end)

    def write(session: Session, row: SystemResult) -> None:
        # A second erasure (data back at the re-check, a failed verify) adds to the first: what the
        # first erased and kept must stay on record, though the second finds less or nothing.
        total, kept = dict(row.erased_counts), dict(row.retained_counts)
        for category, n in erased.items():
            total[category] = total.get(category, 0) + n
        for category, n in outcome.retained.items():
            kept[category] = max(kept.get(category, 0), n)
        row.erased_counts, row.method, row.error = total, outcome.method[:200], None
        row.retained_counts = {category: n for category, n in kept.items() if n}
        row.erased_at, row.attempts = datetime.now(UTC), row.attempts + 1
        _keep(session, request_id, system, row.retained_counts, basis_until)  # verify checks the rest
        _end_released_holds(session, request_id, system)
        data = {"system": system, "method": outcome.method, "counts": erased, "retained": row.retained_counts}
        append_event(session, request_id=request_id, kind="system.erased", data=data)

    record_step(rt, request_id, system, write)  # the vendor erased: record it, whatever the database does
    get_run_logger().info("%s: erased %d records by %s", system, sum(erased.values()), outcome.method)
    return erased


def _keep(
    session: Session,
    request_id: str,
    system: str,
    counts: Mapping[str, int],
    basis_until: Any,
    *,
    hold_id: int | None = None,
) -> None:
    """Record (or update, on a re-run) what the system keeps, where a rule gives the basis."""
    lock_request(session, request_id)  # before the inserts: concurrent erasures must not deadlock
    for category, count in sorted(counts.items()):
        found = basis_until(category)
        if found is None:
            continue  # no basis: verify_erasure refuses to call the system erased
        basis, until = found
        stmt = select(RetainedData).where(
            RetainedData.request_id == request_id,
            RetainedData.system == system,
            RetainedData.category == category,
        )
        kept = session.scalars(stmt).first() or RetainedData(
            request_id=request_id, system=system, category=category, kept_at=datetime.now(UTC)
        )
        kept.count, kept.basis, kept.until, kept.hold_id, kept.status = (
            count,
            basis[:300],
            until,
            hold_id,
            "kept",
        )
        kept.ended_at = kept.ended_by = None
        session.add(kept)


def _kept_categories(session: Session, request_id: str, system: str) -> set[str]:
    stmt = select(RetainedData.category).where(
        RetainedData.request_id == request_id, RetainedData.system == system, RetainedData.status == "kept"
    )
    return set(session.scalars(stmt))


def _end_released_holds(session: Session, request_id: str, system: str) -> None:
    """A hold was released and this run erased the system: what the hold kept is gone now."""
    stmt = select(RetainedData).where(
        RetainedData.request_id == request_id,
        RetainedData.system == system,
        RetainedData.hold_id.is_not(None),
        RetainedData.status == "kept",
    )
    for kept in session.scalars(stmt):
        kept.status, kept.ended_at, kept.ended_by = "erased", datetime.now(UTC), "erasure"


def _today() -> date:
    return datetime.now(OSLO).date()


@system_step("verify")
def verify_erasure(request_id: str, system: str) -> bool:
    """Look the subject up again; an erasure counts only when nothing is found any more."""
    rt = runtime.current()
    with system_row(rt, request_id, system) as (_, row):
        if row.verified_at is not None or (row.looked_up_at is not None and not row.counts):
            return True  # verified earlier, or the system never held anything
        if row.method == "manual" or row.status is SystemStatus.RETAINED:
            return True  # an operator answered for a system we cannot search
        erased = row.erased_at is not None
    if not erased:  # refused outside the row's transaction, which holds the ledger's write lock
        _refuse(rt, request_id, system, "verify", "verification before erasure")
    found = call_system(rt, request_id, system, "verify", lambda client, subject: client.lookup(subject))
    if found is None:
        return False  # cannot be re-checked by a program: an operator answers
    if found.found:  # the next run erases again: erase_system redoes a failed system
        failure = step_failure(system, RetryableError(f"re-check still finds {found.total} records"))
        record_failure(rt, request_id, system, "verify", failure)
        raise failure
    with system_row(rt, request_id, system) as (session, row):
        unexplained = sorted(set(row.retained_counts) - _kept_categories(session, request_id, system))
    if unexplained:  # gone from search, but kept data the register gives no basis for: not certifiable
        _refuse(
            rt,
            request_id,
            system,
            "verify",
            f"kept {', '.join(unexplained)} without a retention rule in the register",
        )

    def write(session: Session, row: SystemResult) -> None:
        row.status, row.verified_at, row.error = SystemStatus.ERASED, datetime.now(UTC), None
        append_event(session, request_id=request_id, kind="system.verified", data={"system": system})

    record_step(rt, request_id, system, write)
    return True


def _refuse(rt: Runtime, request_id: str, system: str, step: str, why: str) -> NoReturn:
    """Record and raise a step that must not run yet (its row says failed, with the reason)."""
    failure = StepFailed(f"{system}: {why}", retryable=False)
    record_failure(rt, request_id, system, step, failure)
    raise failure

"""Tasks that erase the subject from one system and prove it by looking again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NoReturn

from prefect import get_run_logger

from dsar import runtime
from dsar.ledger.chain import append_event
from dsar.ledger.models import SystemStatus
from dsar.runtime import Runtime
from integrations.errors import RetryableError
from tasks.common import StepFailed, step_failure
from tasks.systems import call_system, record_failure, system_row, system_step

__all__ = ["erase_system", "verify_erasure"]


@system_step("erase")
def erase_system(request_id: str, system: str) -> dict[str, int] | None:
    """Erase the subject from one system, once; systems that hold nothing are left alone."""
    rt = runtime.current()
    with system_row(rt, request_id, system) as (_, row):
        planned = row.looked_up_at is not None
        if planned and (
            not row.counts or (row.erased_at is not None and row.status is not SystemStatus.FAILED)
        ):
            return dict(row.erased_counts)  # nothing to erase, or done by an earlier run
    if not planned:  # refused outside the row's transaction, which holds the ledger's write lock
        _refuse(rt, request_id, system, "erase", "erasure before look-up")
    outcome = call_system(rt, request_id, system, "erase", lambda client, subject: client.erase(subject))
    if outcome is None:
        return None  # an operator answers for this system
    erased = {category: n for category, n in outcome.counts.items() if n}
    with system_row(rt, request_id, system) as (session, row):
        row.erased_counts, row.method, row.error = erased, outcome.method, None
        row.retained_counts = {category: n for category, n in outcome.retained.items() if n}
        row.erased_at, row.attempts = datetime.now(UTC), row.attempts + 1
        data = {"system": system, "method": outcome.method, "counts": erased, "retained": row.retained_counts}
        append_event(session, request_id=request_id, kind="system.erased", data=data)
    get_run_logger().info("%s: erased %d records by %s", system, sum(erased.values()), outcome.method)
    return erased


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
        row.status, row.verified_at, row.error = SystemStatus.ERASED, datetime.now(UTC), None
        append_event(session, request_id=request_id, kind="system.verified", data={"system": system})
    return True


def _refuse(rt: Runtime, request_id: str, system: str, step: str, why: str) -> NoReturn:
    """Record and raise a step that must not run yet (its row says failed, with the reason)."""
    failure = StepFailed(f"{system}: {why}", retryable=False)
    record_failure(rt, request_id, system, step, failure)
    raise failure

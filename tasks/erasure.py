"""Tasks that erase the subject from one system and prove it by looking again."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsar import runtime
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import SystemStatus
from integrations.errors import RetryableError
from tasks.common import StepFailed, only_retryable, step_failure
from tasks.systems import call_system, record_failure

__all__ = ["erase_system", "verify_erasure"]


@task(
    task_run_name="erase-{system}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=only_retryable,
)
def erase_system(request_id: str, system: str) -> dict[str, int]:
    """Erase the subject from one system, once; systems that hold nothing are left alone."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        if row.looked_up_at is None:
            raise StepFailed(f"{system}: erasure before look-up", retryable=False)
        if not row.counts or (row.erased_at is not None and row.status is not SystemStatus.FAILED):
            return dict(row.erased_counts)  # nothing to erase, or done by an earlier run
    outcome = call_system(rt, request_id, system, "erase", lambda client, subject: client.erase(subject))
    erased = {category: n for category, n in outcome.counts.items() if n}
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.erased_counts, row.method, row.error = erased, outcome.method, None
        row.erased_at, row.attempts = datetime.now(UTC), row.attempts + 1
        append_event(
            session,
            request_id=request_id,
            kind="system.erased",
            data={"system": system, "method": outcome.method, "counts": erased},
        )
    get_run_logger().info("%s: erased %d records by %s", system, sum(erased.values()), outcome.method)
    return erased


@task(
    task_run_name="verify-{system}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=only_retryable,
)
def verify_erasure(request_id: str, system: str) -> bool:
    """Look the subject up again; an erasure counts only when nothing is found any more."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        if row.verified_at is not None or (row.looked_up_at is not None and not row.counts):
            return True  # verified earlier, or the system never held anything
        if row.erased_at is None:
            raise StepFailed(f"{system}: verification before erasure", retryable=False)
    found = call_system(rt, request_id, system, "verify", lambda client, subject: client.lookup(subject))
    if found.found:  # the next run erases again: erase_system redoes a failed system
        failure = step_failure(system, RetryableError(f"re-check still finds {found.total} records"))
        record_failure(rt, request_id, system, "verify", failure)
        raise failure
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.status, row.verified_at, row.error = SystemStatus.ERASED, datetime.now(UTC), None
        append_event(session, request_id=request_id, kind="system.verified", data={"system": system})
    return True

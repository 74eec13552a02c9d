"""The task that gives the Art. 19 notices of a request (see :mod:`dsar.recipients`)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsar import recipients, runtime
from dsar.ledger import repository as repo
from dsar.ledger.models import SystemStatus
from integrations.errors import RetryableError
from integrations.rights import Corrections
from tasks.common import only_retryable, step_failure

__all__ = ["notify_recipients"]

# The systems where the action was carried out: only those recipients are told.
_CARRIED_OUT = {
    "erasure": {SystemStatus.ERASED},
    "rectification": {SystemStatus.APPLIED, SystemStatus.MANUAL},
    "restriction": {SystemStatus.APPLIED, SystemStatus.MANUAL},
    "restriction_lifted": {SystemStatus.APPLIED, SystemStatus.MANUAL},
}


@task(
    task_run_name="notify-recipients-{action}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=only_retryable,
)
def notify_recipients(
    request_id: str, action: recipients.Action, corrections: Corrections | None = None
) -> int:
    """E-mail each recipient's privacy contact once; fails (and retries) until every notice is sent."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        rows = repo.get_request(session, request_id).systems
        systems = [
            r.system for r in rows if r.status in _CARRIED_OUT[action] and (r.counts or r.erased_counts)
        ]
        if action == "rectification" and corrections is None:  # read here: never a task parameter
            fixed = repo.load_details(session, keys=rt.ledger.keys, request_id=request_id).get("corrections")
            corrections = Corrections(**fixed) if fixed else None
    try:
        given = recipients.notify_recipients(rt, request_id, action, systems, corrections)
    except RetryableError as exc:
        raise step_failure("recipients", exc) from None
    get_run_logger().info("%s: %d recipients notified (%s)", request_id, len(given), action)
    return len(given)

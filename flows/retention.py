"""The retention job: what an erasure kept on purpose is erased when its time is up.

Runs daily. Rows of ``retained_data`` whose ``until`` is before today (Europe/Oslo), or whose
legal hold was released, are ended per request and system (:mod:`tasks.retention`): erased
through the system's API and verified by a second look-up, dated anew by the register's rule
when a hold kept bookkeeping records, or handed to the privacy mailbox (one mail, status
``due``) when no API can reach them any more. Every end is an event in the request's chain.

Idempotent and safe beside a second run: each group is claimed before anything is called.
A system that fails is recorded (``retention.failed``), its rows stay kept for the next run,
the others go on, and the run ends Failed so that someone looks. Queued mail is delivered last.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import cast

from prefect import flow, get_run_logger
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from dsar import runtime
from tasks.alerts import deliver_mail
from tasks.common import with_retries
from tasks.retention import end_retention, find_due_retention, today_in_oslo

__all__ = ["CRON", "DEPLOYMENT", "RetentionFailed", "retention", "scheduled_deployment"]

DEPLOYMENT, CRON = "daily", "0 3 * * *"  # prefect.yaml declares the same


class RetentionFailed(Exception):
    """Some systems could not be ended; their rows stay kept and the next run tries again."""


@flow(name="retention")
def retention(today: str | None = None) -> dict[str, int]:
    """End what erasures kept once its period is over or its hold was released; deliver the mail."""
    day = date.fromisoformat(today) if today else today_in_oslo()
    groups = find_due_retention(day)
    step = with_retries(end_retention, runtime.current().settings)
    outcomes: Counter[str] = Counter()
    failed: list[str] = []
    for request_id, system in groups:
        state = step(request_id, system, day, return_state=True)
        if state.is_completed():
            outcomes[str(state.result())] += 1
        else:
            failed.append(f"{request_id}/{system}")
    sent, unsent = deliver_mail()
    summary = {
        "groups": len(groups),
        **{kind: outcomes[kind] for kind in ("erased", "due", "kept", "mixed", "skipped")},
        "failed": len(failed),
        "mail_sent": sent,
        "mail_unsent": unsent,
    }
    get_run_logger().info("retention: %s", summary)
    if failed:
        raise RetentionFailed(
            f"{len(failed)} of {len(groups)} systems could not be ended (see their retention.failed "
            f"events): {', '.join(failed)}"
        )
    return summary


def scheduled_deployment() -> RunnerDeployment:
    """The job as `dsar serve` runs it: every night at 03:00 Oslo time, one run at a time."""
    deployment = retention.to_deployment(
        name=DEPLOYMENT,
        tags=["dsar", "retention"],
        schedules=[Cron(CRON, timezone="Europe/Oslo")],
        concurrency_limit=1,
    )
    return cast(RunnerDeployment, deployment)

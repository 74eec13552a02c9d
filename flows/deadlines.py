"""The deadline watch: a daily scan of the ledger that alerts the privacy mailbox.

Each alert (due soon, overdue, extension decision, stuck; see :mod:`dsar.alerts`) is mailed
once and announced as a Prefect event ``dsar.deadline.<kind>`` on the resource
``dsar.request.<id>``, for automations. A digest of every open request follows once a day.
First, subjects who never confirmed their identity get one reminder, and after
``identity_close_after_days`` their request is closed with a letter (it can be reopened).
Delivery comes last: if the SMTP server is down the mail stays queued and the next run sends it;
the same for internal notes on tickets that Zendesk did not take when they were written
(:mod:`dsar.comments`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from dsar import comments, runtime
from dsar.calendar import OSLO
from tasks.alerts import deliver_mail, find_alerts, queue_alerts, queue_digest
from tasks.identity import chase_identity

__all__ = [
    "CRON",
    "DEPLOYMENT",
    "TIMEZONE",
    "deadline_watch",
    "deliver_ticket_comments",
    "scheduled_deployment",
]

DEPLOYMENT, CRON, TIMEZONE = "daily", "0 7 * * *", "Europe/Oslo"  # prefect.yaml declares the same


@flow(name="deadline-watch")
def deadline_watch(today: str | None = None) -> dict[str, int]:
    """Alert the privacy mailbox about deadlines (each alert once), add the daily digest, deliver."""
    day = date.fromisoformat(today) if today else datetime.now(OSLO).date()
    identity = chase_identity(day)
    alerts = find_alerts(day)
    queued = queue_alerts(alerts)
    digest = queue_digest(day)
    sent, failed = deliver_mail()
    deliver_ticket_comments()
    return {
        "alerts": len(alerts),
        "queued": queued,
        "digest": int(digest),
        "sent": sent,
        "failed": failed,
        "identity_reminded": identity["reminded"],
        "identity_closed": identity["closed"],
    }


@task(cache_policy=NO_CACHE, persist_result=False)
def deliver_ticket_comments() -> tuple[int, int]:
    """Send every pending ticket note (none without Zendesk settings); what fails stays pending."""
    delivery = comments.deliver_pending(runtime.current())
    if delivery.failed:
        get_run_logger().warning("%d ticket notes stay pending: Zendesk did not take them", delivery.failed)
    return delivery.sent, delivery.failed


def scheduled_deployment() -> RunnerDeployment:
    """The watch as `dsar serve` runs it: every morning at 07:00 Oslo time, one run at a time."""
    # to_deployment is sync/async dual; called from sync code it returns the deployment itself.
    deployment = deadline_watch.to_deployment(
        name=DEPLOYMENT,
        tags=["dsar", "deadlines"],
        schedules=[Cron(CRON, timezone=TIMEZONE)],
        concurrency_limit=1,
    )
    return cast(RunnerDeployment, deployment)

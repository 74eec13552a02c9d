"""The reconciler: every 10 minutes, no request lost or stuck (see :mod:`dsar.reconcile`).

It restarts a request whose flow run is gone, failed, crashed or dead while "running" (the flow
resumes from its ledger checkpoints), and escalates one that waits for a human too long, each
as a ledger event; the deadline digest lists what it did. Concurrent runs act once per request
and reason (row lock); the deployment allows one at a time anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from prefect import flow
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from tasks.reconcile import reconcile_open_requests

__all__ = ["CRON", "DEPLOYMENT", "TIMEZONE", "reconcile", "scheduled_deployment"]

DEPLOYMENT, CRON, TIMEZONE = "every-10-minutes", "*/10 * * * *", "Europe/Oslo"  # prefect.yaml the same


@flow(name="reconcile")
def reconcile(now: str | None = None) -> dict[str, int]:
    """Compare the open requests with their flow runs; restart or escalate. ``now``: ISO time (tests)."""
    moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return reconcile_open_requests(moment)


def scheduled_deployment() -> RunnerDeployment:
    """The reconciler as `dsar serve` runs it: every 10 minutes, one run at a time."""
    deployment = reconcile.to_deployment(
        name=DEPLOYMENT,
        tags=["dsar", "reconcile"],
        schedules=[Cron(CRON, timezone=TIMEZONE)],
        concurrency_limit=1,
    )
    return cast(RunnerDeployment, deployment)

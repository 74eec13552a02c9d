"""The package purge: documents and exports are kept for a while after their request closed, then shredded.

Runs daily; each purge is an event in the request's chain (``document.purged``), the ledger row
stays with its digest. Idempotent: a run that finds nothing to purge changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from dsar import document_store, runtime

__all__ = ["CRON", "DEPLOYMENT", "purge_documents", "scheduled_deployment"]

DEPLOYMENT, CRON = "daily", "30 2 * * *"  # prefect.yaml declares the same


@task(cache_policy=NO_CACHE, persist_result=False)
def purge_expired_documents() -> dict[str, int]:
    rt = runtime.current()
    retention = timedelta(days=rt.settings.documents_retention_days)
    purged = document_store.purge_expired(rt.ledger, retention=retention)
    get_run_logger().info("purged %d documents of %d requests", purged.documents, purged.requests)
    return {"documents": purged.documents, "requests": purged.requests}


@flow(name="package-purge")
def purge_documents() -> dict[str, int]:
    """Shred the documents of requests closed longer ago than ``documents_retention_days``."""
    return purge_expired_documents()


def scheduled_deployment() -> RunnerDeployment:
    """The purge as `dsar serve` runs it: every night at 02:30 Oslo time, one run at a time."""
    deployment = purge_documents.to_deployment(
        name=DEPLOYMENT,
        tags=["dsar", "purge"],
        schedules=[Cron(CRON, timezone="Europe/Oslo")],
        concurrency_limit=1,
    )
    return cast(RunnerDeployment, deployment)

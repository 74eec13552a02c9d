"""The reconciler's steps under Prefect: check the open requests, mail the escalations, report.

The logic is :mod:`dsar.reconcile`; here it gets the process's runtime, a Prefect client, the
escalation mail (through the outbox, once per key, recorded in ``alerts_sent`` like the deadline
alerts) and the summary artifact. Prefect sees ids, counts and reasons only.
"""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client

from dsar import outbox, reconcile, runtime
from dsar.calendar import OSLO
from dsar.reconcile import Escalation, Policy, Starter, Summary
from integrations.mail import Mail, Mailer
from tasks.alerts import message_id, record_sent, smtp_config

__all__ = ["ARTIFACT_KEY", "escalate", "reconcile_open_requests", "run_reconciler"]

ARTIFACT_KEY = "reconciler-summary"


def escalate(escalation: Escalation) -> None:
    """Queue the escalation mail to the privacy mailbox (once per key), record it, try to send it."""
    rt = runtime.current()
    since = escalation.since.astimezone(OSLO).date() if escalation.since else None
    subject, body = rt.renderer.render_mail(
        "reconcile_escalation", rt.settings.alert_language, escalation=escalation, since=since
    )
    mail = Mail(
        to=rt.settings.privacy_mailbox, subject=subject, body=body, message_id=message_id(escalation.key)
    )
    outbox.enqueue(rt.ledger, request_id=escalation.request_id, kind="alert.reconcile", mail=mail)
    record_sent(rt.ledger, escalation.key, "reconcile", escalation.request_id, mail.message_id)
    delivery = outbox.deliver(rt.ledger, Mailer(smtp_config(rt.settings)), request_id=escalation.request_id)
    if delivery.failed:  # queued: the next reconciler or deadline watch sends it
        get_run_logger().warning(
            "reconcile: %d mails stay queued for %s", delivery.failed, escalation.request_id
        )


def run_reconciler(now: datetime, starter: Starter | None = None) -> Summary:
    """One pass over the open requests, with this process's runtime and Prefect API."""
    rt = runtime.current()
    with get_client(sync_client=True) as client:
        return reconcile.reconcile_requests(
            rt.ledger,
            client,
            now=now,
            policy=Policy.from_settings(rt.settings),
            starter=starter or reconcile.start_request,
            escalate=escalate,
        )


@task(cache_policy=NO_CACHE, persist_result=False)
def reconcile_open_requests(now: datetime) -> dict[str, int]:
    """Reconcile once, publish the summary artifact, return the counts."""
    summary = run_reconciler(now)
    create_markdown_artifact(
        key=ARTIFACT_KEY, markdown=summary.markdown(now), description="What the reconciler did (ids only)"
    )
    counts = summary.as_dict()
    get_run_logger().info("reconcile: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts

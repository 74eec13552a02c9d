"""The deadline watch's steps: find the new alerts, queue each once, the daily digest, delivery.

Every mail goes to the privacy mailbox through the outbox. The Message-ID is derived from the
alert's key and the key is recorded in ``alerts_sent``. The outbox commits in its own
transaction, so the two writes are made idempotent instead: the mail is queued first (a second
queue of the same Message-ID is a no-op), then the key is recorded. A run that stops between
the two records the key on the next run without queuing again. Each alert is mailed once.

Prefect sees request ids, dates and counts only; the mails carry no personal data either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from prefect import get_run_logger, task
from prefect.blocks.system import Secret
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from dsar import outbox, runtime
from dsar.alerts import Alert, open_clocks, reconciler_actions, scan
from dsar.ledger import Ledger
from dsar.ledger.models import AlertSent
from dsar.settings import Settings
from integrations.mail import Mail, Mailer, SmtpConfig

__all__ = [
    "SMTP_SECRET_BLOCK",
    "deliver_mail",
    "find_alerts",
    "message_id",
    "queue_alerts",
    "queue_digest",
    "record_sent",
]

# The Prefect Secret block holding the SMTP password when settings give only a username.
SMTP_SECRET_BLOCK = "dsar-smtp-password"  # noqa: S105 - a block's name, not a password
_KEYS_PER_QUERY = 500


def message_id(key: str) -> str:
    """The Message-ID of the mail for ``key`` (the same on every run)."""
    return f"<dsar-alert.{key.replace(':', '.')}@dsar-pipeline>"


@task(cache_policy=NO_CACHE, persist_result=False)
def find_alerts(today: date) -> list[Alert]:
    """The alerts that apply today and were never sent."""
    rt = runtime.current()
    s = rt.settings
    with rt.ledger.session() as session:
        alerts = scan(
            session, today=today, thresholds=s.alert_thresholds_days, stuck_after_days=s.stuck_after_days
        )
        keys = [a.key for a in alerts]
        sent = {
            key
            for start in range(0, len(keys), _KEYS_PER_QUERY)
            for key in session.scalars(
                select(AlertSent.key).where(AlertSent.key.in_(keys[start : start + _KEYS_PER_QUERY]))
            )
        }
    return [a for a in alerts if a.key not in sent]


@task(cache_policy=NO_CACHE, persist_result=False)
def queue_alerts(alerts: Sequence[Alert]) -> int:
    """Queue one mail per alert to the privacy mailbox, record it, emit its Prefect event."""
    queued = sum(_queue_alert(alert) for alert in alerts)
    get_run_logger().info("queued %d of %d deadline alerts", queued, len(alerts))
    return queued


def _queue_alert(alert: Alert) -> bool:
    rt = runtime.current()
    subject, body = rt.renderer.render_mail("deadline_alert", rt.settings.alert_language, alert=alert)
    mail = Mail(to=rt.settings.privacy_mailbox, subject=subject, body=body, message_id=message_id(alert.key))
    outbox.enqueue(rt.ledger, request_id=alert.request_id, kind=f"alert.{alert.kind}", mail=mail)
    if not _record(rt.ledger, alert.key, alert.kind, alert.request_id, mail.message_id):
        return False
    emit_event(
        event=f"dsar.deadline.{alert.kind}",
        resource={"prefect.resource.id": f"dsar.request.{alert.request_id}"},
        payload={"days_left": alert.days_left, "due_date": alert.due_date.isoformat()},
    )
    return True


@task(cache_policy=NO_CACHE, persist_result=False)
def queue_digest(today: date) -> bool:
    """Queue the day's digest of every open request (once per day); True if queued now."""
    rt = runtime.current()
    key = f"digest:{today.isoformat()}"
    with rt.ledger.session() as session:
        if session.scalar(select(AlertSent.id).where(AlertSent.key == key)):
            return False
        clocks = open_clocks(session, today=today)
        reconciled = reconciler_actions(session, today=today)  # restarts and escalations since yesterday
    overdue = sum(1 for c in clocks if c.days_left(today) < 0 and not c.suspended_now)
    subject, body = rt.renderer.render_mail(
        "deadline_digest",
        rt.settings.alert_language,
        today=today,
        clocks=clocks,
        overdue=overdue,
        reconciled=reconciled,
        reconciled_since=today - timedelta(days=1),
    )
    mail = Mail(to=rt.settings.privacy_mailbox, subject=subject, body=body, message_id=message_id(key))
    outbox.enqueue(rt.ledger, request_id=None, kind="alert.digest", mail=mail)
    return _record(rt.ledger, key, "digest", None, mail.message_id)


@task(cache_policy=NO_CACHE, persist_result=False)
def deliver_mail() -> tuple[int, int]:
    """Send every unsent mail in the outbox; what fails stays queued for the next run."""
    rt = runtime.current()
    delivery = outbox.deliver(rt.ledger, Mailer(smtp_config(rt.settings)))
    if delivery.failed:
        get_run_logger().warning("%d mails stay queued: the SMTP server did not take them", delivery.failed)
    return delivery.sent, delivery.failed


def smtp_config(settings: Settings) -> SmtpConfig:
    """The SMTP server from settings; a password missing beside a username comes from a Secret block."""
    config = settings.smtp()
    if config.username and config.password is None:
        block = Secret.load(SMTP_SECRET_BLOCK)  # sync in a sync task; typed as possibly awaitable
        assert isinstance(block, Secret)
        return dataclasses.replace(config, password=str(block.get()))
    return config


def record_sent(ledger: Ledger, key: str, kind: str, request_id: str | None, mail_id: str) -> bool:
    """Record that the mail for ``key`` was queued (the reconciler's escalations use it too)."""
    return _record(ledger, key, kind, request_id, mail_id)


def _record(ledger: Ledger, key: str, kind: str, request_id: str | None, mail_id: str) -> bool:
    """Record that ``key`` was queued; False if it already was (by this or a concurrent run)."""
    try:
        with ledger.session() as session:
            if session.scalar(select(AlertSent.id).where(AlertSent.key == key)):
                return False
            sent = AlertSent(
                key=key, kind=kind, request_id=request_id, sent_at=datetime.now(UTC), message_id=mail_id
            )
            session.add(sent)
    except IntegrityError:
        return False
    return True

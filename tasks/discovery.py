"""Tasks that find the subject in one system: count (for erasure plans) or export (for access)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsar import runtime
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import SystemStatus
from tasks.common import only_retryable
from tasks.systems import call_system

__all__ = ["collect_system", "look_up_system"]


@task(
    task_run_name="collect-{system}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=only_retryable,
)
def collect_system(request_id: str, system: str) -> dict[str, int]:
    """Export what one system holds on the subject and keep it, encrypted, in the ledger."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        if row.payload_ciphertext is not None:
            return dict(row.counts)  # collected by an earlier run
    export = call_system(rt, request_id, system, "collect", lambda client, subject: client.export(subject))
    counts = export.counts()
    payload = [dataclasses.asdict(record) | {"fields": dict(record.fields)} for record in export.records]
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.status = SystemStatus.FOUND if counts else SystemStatus.NONE
        row.counts, row.error, row.attempts = counts, None, row.attempts + 1
        row.payload_ciphertext = rt.ledger.keys.cipher.encrypt_json(payload)
        row.looked_up_at = datetime.now(UTC)
        append_event(
            session,
            request_id=request_id,
            kind="system.collected",
            data={"system": system, "status": row.status.value, "counts": counts},
        )
    get_run_logger().info("%s: %d records in %d categories", system, sum(counts.values()), len(counts))
    return counts


@task(
    task_run_name="look-up-{system}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=only_retryable,
)
def look_up_system(request_id: str, system: str) -> dict[str, int]:
    """Count what one system holds on the subject, by category."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        if row.looked_up_at is not None:
            return dict(row.counts)  # planned by an earlier run
    found = call_system(rt, request_id, system, "look-up", lambda client, subject: client.lookup(subject))
    counts = {category: n for category, n in found.counts.items() if n}
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.status = SystemStatus.FOUND if counts else SystemStatus.NONE
        row.counts, row.error, row.attempts = counts, None, row.attempts + 1
        row.looked_up_at = datetime.now(UTC)
        append_event(
            session,
            request_id=request_id,
            kind="system.looked_up",
            data={"system": system, "status": row.status.value, "counts": counts},
        )
    get_run_logger().info("%s: %d records found", system, sum(counts.values()))
    return counts

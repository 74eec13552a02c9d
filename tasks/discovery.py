"""Tasks that find the subject in one system: count (for erasure plans) or export (for access)."""

from __future__ import annotations

import dataclasses

from prefect import get_run_logger

from dsar import runtime
from tasks.systems import call_system, record_answer, system_row, system_step

__all__ = ["collect_system", "look_up_system"]


@system_step("collect")
def collect_system(request_id: str, system: str) -> dict[str, int] | None:
    """Export what one system holds on the subject and keep it, encrypted, in the ledger."""
    rt = runtime.current()
    with system_row(rt, request_id, system) as (_, row):
        if row.payload_ciphertext is not None or (row.operator and row.status.is_definite):
            return dict(row.counts)  # collected, or answered by an operator, in an earlier run
    export = call_system(rt, request_id, system, "collect", lambda client, subject: client.export(subject))
    if export is None:
        return None  # an operator answers for this system
    counts = export.counts()
    payload = [dataclasses.asdict(record) | {"fields": dict(record.fields)} for record in export.records]
    record_answer(rt, request_id, system, counts, event="system.collected", payload=payload)
    get_run_logger().info("%s: %d records in %d categories", system, sum(counts.values()), len(counts))
    return counts


@system_step("look-up")
def look_up_system(request_id: str, system: str) -> dict[str, int] | None:
    """Count what one system holds on the subject, by category."""
    rt = runtime.current()
    with system_row(rt, request_id, system) as (_, row):
        if row.looked_up_at is not None:
            return dict(row.counts)  # planned by an earlier run
    found = call_system(rt, request_id, system, "look-up", lambda client, subject: client.lookup(subject))
    if found is None:
        return None  # an operator answers for this system
    counts = {category: n for category, n in found.counts.items() if n}
    record_answer(rt, request_id, system, counts, event="system.looked_up")
    get_run_logger().info("%s: %d records found", system, sum(counts.values()))
    return counts

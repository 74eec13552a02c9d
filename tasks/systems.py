"""Calling one configured system on behalf of a request, with the outcome recorded.

The subject is decrypted from the ledger inside the task, used, and dropped; it never
becomes a task parameter or result. Every attempt is counted, and a failure is written to
the ledger (PII-free) before Prefect sees a sanitised :class:`~tasks.common.StepFailed`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import SystemStatus
from dsar.runtime import Runtime
from integrations.base import Subject, System
from tasks.common import StepFailed, step_failure

__all__ = ["call_system", "record_failure"]

T = TypeVar("T")


def call_system(
    rt: Runtime, request_id: str, system: str, step: str, call: Callable[[System, Subject], T]
) -> T:
    """Run ``call`` against one system for the request's subject; record a failure, then raise."""
    with rt.ledger.session() as session:
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
    failure: StepFailed | None = None
    try:
        client = rt.system(system)
        try:
            result = call(client, subject)
        finally:
            client.close()
    except Exception as exc:  # translated below; the original may carry personal data
        failure = step_failure(system, exc)
    if failure is not None:
        record_failure(rt, request_id, system, step, failure)
        raise failure  # outside the except block: no chained original reaches Prefect
    return result


def record_failure(rt: Runtime, request_id: str, system: str, step: str, failure: StepFailed) -> None:
    """Mark the system failed for this request and add the (PII-free) reason to the chain."""
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.status = SystemStatus.FAILED
        row.error = str(failure)
        row.attempts += 1
        append_event(
            session,
            request_id=request_id,
            kind="system.failed",
            data={
                "system": system,
                "step": step,
                "error": str(failure),
                "retryable": failure.retryable,
                "at": datetime.now(UTC).isoformat(),
            },
        )

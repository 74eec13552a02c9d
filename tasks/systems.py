"""One step against one configured system on behalf of a request, with the outcome recorded.

The subject is decrypted from the ledger inside the task, used, and dropped; it never
becomes a task parameter or result. Every attempt is counted, and a failure is written to
the ledger (PII-free) before Prefect sees a sanitised :class:`~tasks.common.StepFailed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import SystemResult, SystemStatus
from dsar.limits import vendor_slot
from dsar.runtime import Runtime
from integrations.base import Subject, System
from integrations.errors import NeedsOperator
from tasks import operators
from tasks.common import StepFailed, only_retryable, step_failure

__all__ = ["call_system", "record_answer", "record_failure", "record_step", "system_row", "system_step"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def system_step(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """The task decorator of every per-system step: named by system, never cached or persisted."""
    return task(
        task_run_name=f"{name}-{{system}}",
        cache_policy=NO_CACHE,
        persist_result=False,
        retry_condition_fn=only_retryable,
    )


@contextmanager
def system_row(rt: Runtime, request_id: str, system: str) -> Iterator[tuple[Session, SystemResult]]:
    """The request x system row in a transaction of its own."""
    with rt.ledger.session() as session:
        yield (
            session,
            repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind),
        )


def call_system(
    rt: Runtime, request_id: str, system: str, step: str, call: Callable[[System, Subject], T]
) -> T | None:
    """Run ``call`` against one system for the request's subject.

    Returns None when the system has no API for the step and an operator was asked instead;
    records a failure, then raises it, when the call failed.
    """
    with rt.ledger.session() as session:
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
    failure: StepFailed | None = None
    settings = rt.settings
    try:
        client = rt.system(system)
        try:
            with vendor_slot(client.kind, settings.vendor_concurrency, settings.vendor_slot_timeout_s):
                return call(client, subject)
        finally:
            client.close()
    except NeedsOperator as ask:
        operators.ask_for_answer(rt, request_id, system, step, ask, subject)
        return None
    except Exception as exc:  # translated below; the original may carry personal data
        failure = step_failure(system, exc)
    record_failure(rt, request_id, system, step, failure)
    raise failure  # outside the except block: no chained original reaches Prefect


def record_step(
    rt: Runtime, request_id: str, system: str, write: Callable[[Session, SystemResult], None]
) -> None:
    """Record what a step did, in one transaction that is run again whole on a transient database
    error (dropped connection, restart, deadlock): what the vendor did is never left unrecorded."""

    def body(session: Session) -> None:
        write(
            session,
            repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind),
        )

    rt.ledger.transaction(body)


def record_answer(
    rt: Runtime, request_id: str, system: str, counts: dict[str, int], *, event: str, payload: Any = None
) -> None:
    """Record a definite answer: what was found, by category (and, encrypted, the data itself)."""
    sealed = rt.ledger.keys.cipher.encrypt_json(payload) if payload is not None else None

    def write(session: Session, row: SystemResult) -> None:
        row.status = SystemStatus.FOUND if counts else SystemStatus.NONE
        row.counts, row.error, row.attempts = counts, None, row.attempts + 1
        row.looked_up_at = datetime.now(UTC)
        if sealed is not None:
            row.payload_ciphertext = sealed
        data = {"system": system, "status": row.status.value, "counts": counts}
        append_event(session, request_id=request_id, kind=event, data=data)

    record_step(rt, request_id, system, write)


def record_failure(rt: Runtime, request_id: str, system: str, step: str, failure: StepFailed) -> None:
    """Mark the system failed for this request and add the (PII-free) reason to the chain."""

    def write(session: Session, row: SystemResult) -> None:
        row.status, row.error, row.attempts = SystemStatus.FAILED, str(failure), row.attempts + 1
        data = {"system": system, "step": step, "error": str(failure), "retryable": failure.retryable}
        append_event(session, request_id=request_id, kind="system.failed", data=data)

    record_step(rt, request_id, system, write)

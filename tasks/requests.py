"""Tasks that open and close a request in the ledger."""

from __future__ import annotations

from typing import Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsar import runtime
from dsar.ledger import repository as repo
from dsar.ledger.models import RequestStatus, RequestType, SystemResult, SystemStatus
from dsar.limits import ensure_vendor_limits

__all__ = ["IncompleteRequest", "begin_request", "complete_request", "require_definite_answers"]


class IncompleteRequest(Exception):
    """Some system has no definite answer yet; the request stays open."""


@task(cache_policy=NO_CACHE, persist_result=False)
def begin_request(request_id: str, request_type: str) -> list[str]:
    """Mark the request in progress and give every configured system a pending row."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        if request.type is not RequestType(request_type):
            raise ValueError(f"{request_id} has type {request.type}, not {request_type}")
        if not request.status.is_open:
            raise ValueError(f"{request_id} is already {request.status}")
        for spec in rt.specs:
            repo.system_result(session, request_id=request_id, system=spec.name, kind=spec.kind)
        repo.set_status(
            session,
            request=request,
            status=RequestStatus.IN_PROGRESS,
            note=f"{len(rt.specs)} systems configured",
        )
    ensure_vendor_limits(rt.settings.vendor_concurrency)
    get_run_logger().info("request %s: %d systems", request_id, len(rt.specs))
    return rt.system_names


Stage = Literal["answered", "planned", "erased", "applied"]

# What counts as a definite answer at each gate. An erasure is "planned" once every system
# was looked up (a later erase failure must not block the re-run from erasing again), and
# "erased" only when every system is erased, held nothing, or keeps data on a legal basis.
_ANSWERED = {SystemStatus.FOUND, SystemStatus.NONE, SystemStatus.MANUAL}
_ERASED = {SystemStatus.ERASED, SystemStatus.NONE, SystemStatus.RETAINED}
# A rectification, restriction or objection: carried out, done by hand, nothing held, or not concerned.
_APPLIED = {SystemStatus.APPLIED, SystemStatus.MANUAL, SystemStatus.NONE, SystemStatus.NOT_APPLICABLE}


def _settled(row: SystemResult, stage: Stage) -> bool:
    if stage == "planned":
        return row.looked_up_at is not None and row.status is not SystemStatus.AWAITING_OPERATOR
    return row.status in {"erased": _ERASED, "applied": _APPLIED}.get(stage, _ANSWERED)


@task(cache_policy=NO_CACHE, persist_result=False)
def require_definite_answers(request_id: str, systems: list[str], stage: Stage = "answered") -> None:
    """Stop here unless every system gave a definite answer for this stage (no silent omission)."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        open_systems = [r.system for r in request.systems if r.system in systems and not _settled(r, stage)]
        if open_systems:
            repo.set_status(
                session,
                request=request,
                status=RequestStatus.INCOMPLETE,
                note=f"no definite answer from: {', '.join(open_systems)}",
            )
    if open_systems:
        raise IncompleteRequest(f"{request_id}: no definite answer from {', '.join(open_systems)}")


@task(cache_policy=NO_CACHE, persist_result=False)
def complete_request(request_id: str, checkpoint: str) -> None:
    """Close the request as answered."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        repo.set_status(session, request=request, status=RequestStatus.COMPLETED, checkpoint=checkpoint)

"""Prefect tasks of identity verification; each takes the request id, decisions live in the ledger."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsar import runtime
from dsar.identity import service
from dsar.ledger import repository as repo
from dsar.ledger.models import RequestStatus
from dsar.runtime import Runtime
from dsar.settings import IdentityMethod

__all__ = [
    "ask_subject",
    "chase_identity",
    "choose_identity_method",
    "record_identity_review",
    "review_form_text",
    "wait_for_subject",
]


@task(cache_policy=NO_CACHE, persist_result=False)
def choose_identity_method(request_id: str, without_operator: bool = False) -> IdentityMethod | None:
    """None when the requester is already confirmed; else the method the policy picks."""
    method = service.method_for(runtime.current(), request_id, without_operator=without_operator)
    get_run_logger().info("request %s: identity %s", request_id, method or "confirmed")
    return method


@task(cache_policy=NO_CACHE, persist_result=False, retries=3, retry_delay_seconds=30)
def ask_subject(request_id: str, method: IdentityMethod) -> int:
    """Send the challenge to the address on record (retried if the mail server is away)."""
    return service.ask_subject(runtime.current(), request_id, method)


@task(cache_policy=NO_CACHE, persist_result=False)
def wait_for_subject(request_id: str) -> bool:
    """True once the subject confirmed; False when the wait ended (an answer restarts the flow)."""
    rt = runtime.current()
    confirmed = service.wait_for_subject(rt, request_id)
    if confirmed:
        _resume(rt, request_id)
    return confirmed


@task(cache_policy=NO_CACHE, persist_result=False)
def review_form_text(request_id: str) -> str:
    """The operator's form: the request and its ticket, never the person."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        ticket, kind = request.ticket_ref or "(no ticket)", request.type.value
    return "\n".join(
        [
            f"**Identity review for request `{request_id}`** ({kind}), ticket **{ticket}**.",
            "",
            "Record your name and the reason. Do not type the person's data into this form.",
            "",
            "Nothing can be sent to the requester by e-mail or BankID here. Check in the ticket that the "
            "requester is the data subject (GDPR Art. 12(6)); ask for no ID copies.",
            "",
            "*approve*: confirmed. *reject*: not the data subject; the request is closed. "
            "*ask_subject*: send the subject a link or code, if an address is on record.",
        ]
    )


@task(cache_policy=NO_CACHE, persist_result=False)
def record_identity_review(request_id: str, decision: str, operator: str, reason: str) -> str:
    rt = runtime.current()
    outcome = service.record_review(
        rt.ledger, request_id, decision=decision, operator=operator, reason=reason
    )
    if outcome == "approve":
        _resume(rt, request_id)
    return outcome


@task(cache_policy=NO_CACHE, persist_result=False)
def chase_identity(today: date) -> dict[str, int]:
    """Subjects who have not confirmed: one reminder, then the request is closed with a letter."""
    chase = service.chase_unanswered(runtime.current(), today)
    for request_id in chase.closed:
        get_run_logger().info("request %s: closed, identity not confirmed", request_id)
    return {"reminded": len(chase.reminded), "closed": len(chase.closed)}


def _resume(rt: Runtime, request_id: str) -> None:
    """The requester is confirmed: the request is in progress again."""
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        repo.set_status(session, request=request, status=RequestStatus.IN_PROGRESS, note="identity confirmed")

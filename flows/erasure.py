"""The right to erasure (GDPR Art. 17): plan, approve, erase everywhere, verify, tell, certify."""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from dsar import runtime
from flows.approval import approve_erasure
from flows.identity import confirm_identity
from flows.operators import settle_with_operators
from tasks.approval import record_dry_run
from tasks.artifacts import publish_summary
from tasks.common import with_retries
from tasks.controller import forward_to_controller
from tasks.discovery import look_up_system
from tasks.documents import render_deletion_certificate
from tasks.erasure import erase_system, plan_erasure, verify_erasure
from tasks.recipients import notify_recipients
from tasks.requests import begin_request, complete_request, require_definite_answers

__all__ = ["erasure_request"]


@flow(
    name="erasure",
    flow_run_name="erasure-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def erasure_request(request_id: str, dry_run: bool = False) -> str | None:
    """Erase the subject from every configured system, prove it, and certify it.

    Every step is checkpointed in the ledger: a re-run after a crash continues where it stopped,
    erases nothing twice and sends no notice twice. ``dry_run`` stops after the plan.
    """
    settings = runtime.current().settings
    systems = begin_request(request_id, "erasure")
    if forwarded := forward_to_controller(request_id):
        return forwarded  # we only process the data for a customer: the customer decides
    if not confirm_identity(request_id):
        return None  # waiting for the subject; their answer starts the flow again
    with_retries(look_up_system, settings).map(unmapped(request_id), systems, return_state=True)
    settle_with_operators(request_id)
    require_definite_answers(request_id, systems, "planned")
    plan = plan_erasure(request_id)
    if dry_run:
        record_dry_run(request_id)
        return None
    if not approve_erasure(request_id, plan):
        return None  # rejected: the request waits for an operator
    erase, verify = with_retries(erase_system, settings), with_retries(verify_erasure, settings)
    erase.map(unmapped(request_id), systems, return_state=True)
    settle_with_operators(request_id)
    checked = verify.map(unmapped(request_id), systems, return_state=True)
    if still_there := [system for system, state in zip(systems, checked, strict=True) if state.is_failed()]:
        erase.map(unmapped(request_id), still_there, return_state=True)  # once more, then escalate
        verify.map(unmapped(request_id), still_there, return_state=True)
    publish_summary(request_id)
    require_definite_answers(request_id, systems, "erased")
    with_retries(notify_recipients, settings)(request_id, "erasure")  # Art. 19
    certificate = render_deletion_certificate(request_id)
    complete_request(request_id, "certified")
    publish_summary(request_id)
    return certificate

"""The right to erasure (GDPR Art. 17): plan, erase everywhere, verify, certify."""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from dsar import runtime
from flows.identity import confirm_identity
from flows.operators import settle_with_operators
from tasks.artifacts import publish_summary
from tasks.common import with_retries
from tasks.discovery import look_up_system
from tasks.documents import render_deletion_certificate
from tasks.erasure import erase_system, verify_erasure
from tasks.requests import begin_request, complete_request, require_definite_answers

__all__ = ["erasure_request"]


@flow(
    name="erasure",
    flow_run_name="erasure-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def erasure_request(request_id: str) -> str | None:
    """Erase the subject from every configured system and certify it."""
    settings = runtime.current().settings
    systems = begin_request(request_id, "erasure")
    if not confirm_identity(request_id):
        return None  # waiting for the subject; their answer starts the flow again
    with_retries(look_up_system, settings).map(unmapped(request_id), systems, return_state=True)
    settle_with_operators(request_id)
    require_definite_answers(request_id, systems, "planned")
    with_retries(erase_system, settings).map(unmapped(request_id), systems, return_state=True)
    settle_with_operators(request_id)
    with_retries(verify_erasure, settings).map(unmapped(request_id), systems, return_state=True)
    publish_summary(request_id)
    require_definite_answers(request_id, systems, "erased")
    certificate = render_deletion_certificate(request_id)
    complete_request(request_id, "certified")
    publish_summary(request_id)
    return certificate

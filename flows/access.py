"""The right of access (GDPR Art. 15): find everything, collect it, answer with a report."""

from __future__ import annotations

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from dsar import runtime
from flows.identity import confirm_identity
from flows.operators import settle_with_operators
from flows.review import review_before_sending
from tasks.artifacts import publish_summary
from tasks.common import with_retries
from tasks.controller import forward_to_controller
from tasks.discovery import collect_system
from tasks.documents import render_access_report
from tasks.requests import begin_request, complete_request, require_definite_answers
from tasks.review import hold_report
from tasks.ticketing import attach_report_to_ticket

__all__ = ["access_request"]


@flow(
    name="access",
    flow_run_name="access-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def access_request(request_id: str) -> str | None:
    """Answer an access request: every configured system, concurrently, then the report."""
    collect = with_retries(collect_system, runtime.current().settings)
    systems = begin_request(request_id, "access")
    if forwarded := forward_to_controller(request_id):
        return forwarded  # we only process the data for a customer: the customer decides
    if not confirm_identity(request_id):
        return None  # waiting for the subject; their answer starts the flow again
    collect.map(unmapped(request_id), systems, return_state=True)  # outcomes live in the ledger
    settle_with_operators(request_id)
    publish_summary(request_id)
    require_definite_answers(request_id, systems)
    render_access_report(request_id)
    delivery = review_before_sending(request_id)  # redactions render the report again
    report = render_access_report(request_id)  # the newest version: what was reviewed
    if delivery == "hold":
        hold_report(request_id)
        return report
    if delivery == "send":
        attach_report_to_ticket(request_id)
    complete_request(request_id, "answered")
    publish_summary(request_id)
    return report

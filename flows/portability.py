"""The right to data portability (GDPR Art. 20): what the subject provided, in a machine-readable zip."""

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
from tasks.documents import PORTABILITY_EXPORT
from tasks.portability import render_portability_export
from tasks.requests import begin_request, complete_request, require_definite_answers
from tasks.review import hold_report
from tasks.ticketing import attach_document_to_ticket

__all__ = ["portability_request"]


@flow(
    name="portability",
    flow_run_name="portability-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def portability_request(request_id: str) -> str | None:
    """Answer a portability request: collect from every system, then export what Art. 20(1) covers."""
    collect = with_retries(collect_system, runtime.current().settings)
    systems = begin_request(request_id, "portability")
    if forwarded := forward_to_controller(request_id):
        return forwarded  # we only process the data for a customer: the customer decides
    if not confirm_identity(request_id):
        return None  # waiting for the subject; their answer starts the flow again
    collect.map(unmapped(request_id), systems, return_state=True)  # outcomes live in the ledger
    settle_with_operators(request_id)
    publish_summary(request_id)
    require_definite_answers(request_id, systems)  # no export that silently misses a system
    render_portability_export(request_id)  # portable categories only; the rest named in the README
    delivery = review_before_sending(request_id, render_portability_export)  # redactions: again
    export = render_portability_export(request_id)  # the newest version: what was reviewed
    if delivery == "hold":
        hold_report(request_id)
        return export
    if delivery == "send":
        attach_document_to_ticket(request_id, PORTABILITY_EXPORT, "export_attached")
    complete_request(request_id, "exported")
    publish_summary(request_id)
    return export

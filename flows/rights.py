"""Rectification (Art. 16), restriction (Art. 18) and objection to direct marketing (Art. 21(2)).

Each flow reads like its article: confirm who asks, find where the data is, carry the right
out in every system (by API, or by an operator's hand where there is none), tell the
recipients (Art. 19: rectification and restriction), tell the subject, close.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from dsar import runtime
from flows.identity import confirm_identity
from flows.operators import settle_with_operators
from tasks.artifacts import publish_summary
from tasks.common import with_retries
from tasks.controller import forward_to_controller
from tasks.discovery import look_up_system
from tasks.recipients import notify_recipients
from tasks.requests import begin_request, complete_request, require_definite_answers
from tasks.rights import (
    Right,
    apply_right,
    confirm_to_subject,
    ready_to_lift,
    record_lifted,
    record_suppression,
)

__all__ = ["lift_restriction", "objection_request", "rectification_request", "restriction_request"]


def _apply_everywhere(request_id: str, systems: list[str], right: Right) -> None:
    settings = runtime.current().settings
    with_retries(apply_right, settings).map(unmapped(request_id), systems, unmapped(right), return_state=True)
    settle_with_operators(request_id)
    publish_summary(request_id)
    require_definite_answers(request_id, systems, "applied")


def _find_everywhere(request_id: str, systems: list[str]) -> None:
    settings = runtime.current().settings
    with_retries(look_up_system, settings).map(unmapped(request_id), systems, return_state=True)
    settle_with_operators(request_id)
    require_definite_answers(request_id, systems, "planned")


@flow(
    name="rectification",
    flow_run_name="rectification-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def rectification_request(request_id: str) -> str | None:
    """Art. 16: correct the subject's data everywhere it is held, then tell the recipients."""
    return _carry_out_and_tell(request_id, "rectification", checkpoint="rectified")


@flow(
    name="restriction",
    flow_run_name="restriction-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def restriction_request(request_id: str) -> str | None:
    """Art. 18: mark the subject's data restricted everywhere; it is stored, not processed."""
    return _carry_out_and_tell(request_id, "restriction", checkpoint="restricted")


def _carry_out_and_tell(
    request_id: str, right: Literal["rectification", "restriction"], checkpoint: str
) -> str | None:
    """Confirm who asks, find the data, carry the right out everywhere, tell the recipients
    (Art. 19) and the subject, close."""
    systems = begin_request(request_id, right)
    if forwarded := forward_to_controller(request_id):
        return forwarded  # we only process the data for a customer: the customer decides
    if not confirm_identity(request_id):
        return None  # waiting for the subject; their answer starts the flow again
    _find_everywhere(request_id, systems)
    _apply_everywhere(request_id, systems, right)
    with_retries(notify_recipients, runtime.current().settings)(request_id, right)
    letter = confirm_to_subject(request_id)
    complete_request(request_id, checkpoint)
    publish_summary(request_id)
    return letter


@flow(
    name="restriction-lift",
    flow_run_name="restriction-lift-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def lift_restriction(request_id: str, operator: str) -> None:
    """Art. 18(3): once the subject was told and the day has come, lift it everywhere; tell the recipients."""
    ready_to_lift(request_id, operator)
    systems = runtime.current().system_names
    _apply_everywhere(request_id, systems, "restriction_lifted")
    with_retries(notify_recipients, runtime.current().settings)(request_id, "restriction_lifted")
    record_lifted(request_id)


@flow(
    name="objection",
    flow_run_name="objection-{request_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=8),  # type: ignore[arg-type]
)
def objection_request(request_id: str) -> str | None:
    """Art. 21(2) (and 7(3)): stop direct marketing everywhere, and remember the objection."""
    systems = begin_request(request_id, "objection")
    if forwarded := forward_to_controller(request_id):
        return forwarded  # we only process the data for a customer: the customer decides
    if not confirm_identity(request_id):
        return None
    record_suppression(request_id)  # first: the objection holds even if a system is down
    _apply_everywhere(request_id, systems, "objection")
    letter = confirm_to_subject(request_id)
    complete_request(request_id, "objection_honoured")
    publish_summary(request_id)
    return letter

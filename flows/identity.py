"""Confirming the requester is the data subject (GDPR Art. 12(6)) before anything leaves or is deleted.

Called at the start of every request flow. The method comes from the policy: a BankID login
link or an e-mail code goes to the address on record and the clock stops until the answer;
otherwise an operator reviews the case in a Prefect form that names the request and ticket only.
"""

from __future__ import annotations

from typing import Literal

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from dsar import runtime
from tasks.identity import (
    ask_subject,
    choose_identity_method,
    record_identity_review,
    review_form_text,
    wait_for_subject,
)

__all__ = ["IdentityReview", "confirm_identity"]


class IdentityReview(RunInput):
    """Is the requester the data subject?"""

    decision: Literal["approve", "reject", "ask_subject"]
    operator: str = Field(min_length=2, description="Your name: you answer for this decision")
    reason: str = Field(min_length=2, description="Why (what you checked). No personal data.")


def confirm_identity(request_id: str) -> bool:
    """True when the requester is confirmed; False when the flow must stop here for now."""
    method = choose_identity_method(request_id)
    if method is None:
        return True
    if method == "operator":
        review = pause_flow_run(
            wait_for_input=IdentityReview.with_initial_data(description=review_form_text(request_id)),
            timeout=runtime.current().settings.operator_timeout_s,
            poll_interval=runtime.current().settings.operator_poll_s,
            key="identity",
        )
        decision = record_identity_review(request_id, review.decision, review.operator, review.reason)
        if decision != "ask_subject":
            return decision == "approve"
        method = choose_identity_method(request_id, without_operator=True)
        if method is None or method == "operator":
            return False  # nothing reaches the subject; the request waits for the ticket
    ask_subject(request_id, method)
    return wait_for_subject(request_id)

"""The operator's approval of an erasure plan: nothing is erased before a named person agrees.

The form shows the plan (systems, categories, counts, what is kept and until when), never a
value. ``DSAR_ERASURE_APPROVAL=automatic`` approves in the name of the policy, recorded as such.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, model_validator

from dsar import runtime
from tasks.approval import approval_text, approved_before, record_approval

__all__ = ["ErasureApproval", "approve_erasure"]

AUTOMATIC = "policy (DSAR_ERASURE_APPROVAL=automatic)"


class ErasureApproval(RunInput):
    """May the plan be carried out?"""

    decision: Literal["approve", "reject"]
    operator: str = Field(min_length=2, description="Your name: you answer for this decision")
    reason: str = Field(default="", description="Why (required to reject). No personal data.")

    @model_validator(mode="after")
    def _rejection_has_reason(self) -> ErasureApproval:
        if self.decision == "reject" and len(self.reason.strip()) < 8:
            raise ValueError("say why the plan is rejected")
        return self


def approve_erasure(request_id: str, plan: dict[str, Any]) -> bool:
    """True when the plan is approved (now, by policy, or by an earlier run of this request)."""
    if approved_before(request_id):
        return True
    settings = runtime.current().settings
    if settings.erasure_approval == "automatic":
        record_approval(request_id, "approve", AUTOMATIC, "")
        return True
    answer = pause_flow_run(
        wait_for_input=ErasureApproval.with_initial_data(description=approval_text(request_id, plan)),
        timeout=settings.operator_timeout_s,
        poll_interval=settings.operator_poll_s,
        key="approve-erasure",
    )
    record_approval(request_id, answer.decision, answer.operator, answer.reason)
    return answer.decision == "approve"

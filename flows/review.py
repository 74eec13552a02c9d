"""The operator's review before an answer leaves: send, redact (and look again), or hold.

The form names the request and the ticket only; redactions name systems, record ids and
fields, never values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from dsar import runtime
from tasks.documents import render_access_report
from tasks.review import needs_review, record_review, review_text, reviewed_before

__all__ = ["Delivery", "ReportReview", "review_before_sending"]


class ReportReview(RunInput):
    """May the answer be sent?"""

    decision: Literal["send", "redact", "hold"]
    operator: str = Field(min_length=2, description="Your name: you answer for this decision")
    redactions: list[str] = Field(
        default_factory=list,
        description="Another person's data to hide (GDPR Art. 15(4)), each as system/record id/field",
    )
    note: str = Field(default="", description="Why. No personal data.")


Delivery = Literal["send", "hold", "keep"]


def review_before_sending(
    request_id: str, render: Callable[[str, int], object] = render_access_report
) -> Delivery:
    """``send`` when an operator approved sending the (possibly re-rendered) report; ``hold`` when
    they stopped it; ``keep`` when nothing is sent on (no ticket to send to: kept for download).

    ``render(request_id, revision)`` makes the document again after redactions: the access
    report by default, the portability export for Art. 20."""
    if not needs_review(request_id):
        return "keep"
    if reviewed_before(request_id) == "send":
        return "send"
    settings = runtime.current().settings
    round_ = 0
    while True:
        answer = pause_flow_run(
            wait_for_input=ReportReview.with_initial_data(description=review_text(request_id, round_)),
            timeout=settings.operator_timeout_s,
            poll_interval=settings.operator_poll_s,
            key=f"review-{round_}",
        )
        decision = record_review(request_id, answer.decision, answer.operator, answer.redactions, answer.note)
        if decision != "redact":
            return "send" if decision == "send" else "hold"
        render(request_id, round_ + 1)
        round_ += 1

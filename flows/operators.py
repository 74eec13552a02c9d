"""Pausing a flow for operators: the forms they fill in the Prefect UI.

The forms name the request and the system, never the person. The flow waits (up to
``DSAR_OPERATOR_TIMEOUT_S``) for each answer, then records it in the ledger.
"""

from __future__ import annotations

from typing import Literal

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from dsar import runtime
from tasks.operators import RIGHTS_STEPS, open_questions, record_answer

__all__ = ["ErasureAnswer", "RightAnswer", "SearchAnswer", "settle_with_operators"]


class _Answer(RunInput):
    operator: str = Field(min_length=2, description="Your name: you answer for this system")
    note: str = Field(default="", description="What you checked or did, and where. No personal data.")
    evidence: str = Field(
        default="",
        description="Where the file is kept (the processor's reply, an export): a case-folder path "
        "or a link. The file itself stays out of Prefect.",
    )


class SearchAnswer(_Answer):
    """Did the system hold data on the person?"""

    outcome: Literal["found", "none"]
    records: int = Field(default=0, ge=0, description="About how many records, if found")


class ErasureAnswer(_Answer):
    """Was the person's data erased from the system?"""

    outcome: Literal["erased", "retained"]


class RightAnswer(_Answer):
    """Was the right carried out in the system (corrected, restricted, unsubscribed, lifted)?"""

    outcome: Literal["done", "not_held"]


def settle_with_operators(request_id: str) -> None:
    """Ask an operator about every system without an API that is waiting, one form each."""
    settings = runtime.current().settings
    for system, step, description in open_questions(request_id):
        form = ErasureAnswer if step == "erase" else RightAnswer if step in RIGHTS_STEPS else SearchAnswer
        answer = pause_flow_run(
            wait_for_input=form.with_initial_data(description=description),
            timeout=settings.operator_timeout_s,
            poll_interval=settings.operator_poll_s,
            key=f"{step}-{system}".replace("_", "-"),  # Prefect's keys: lower case, digits, dashes
        )
        records = answer.records if isinstance(answer, SearchAnswer) else 0
        note = f"{answer.note} (file: {answer.evidence})" if answer.evidence else answer.note
        record_answer(request_id, system, step, answer.outcome, answer.operator, note, records)

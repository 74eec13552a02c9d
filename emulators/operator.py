"""A stand-in for the human operator: answers the flow's paused forms through Prefect's API.

The demo runs unattended, so its "operator" answers each form the way a person would in the
Prefect UI (by resuming the paused run with input), and signs as an automatic demo operator
so no document can mistake it for a person. Tests use it to drive the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from emulators.poller import Poller

__all__ = ["AnswerFor", "Operator"]

AnswerFor = Callable[[str], dict[str, Any]]  # pause key ("<step>-<system>") -> form input


class Operator(Poller):
    """Resumes every paused flow run with ``answer_for(pause_key)``, until stopped."""

    def __init__(self, answer_for: AnswerFor, *, poll_s: float = 0.5) -> None:
        super().__init__(poll_s=poll_s, name="demo-operator")
        self._answer_for = answer_for
        self.answered: list[str] = []

    def poll(self) -> None:
        for run_id, key in _paused_runs():
            resume_flow_run(run_id, run_input=self._answer_for(key))
            self.answered.append(key)


def _paused_runs() -> list[tuple[Any, str]]:
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=paused)
    return [(run.id, str(run.state.state_details.pause_key)) for run in runs if run.state]

"""What every task shares: the retry rule and the PII-free failure Prefect gets to see."""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from integrations.errors import IntegrationError, RetryableError

__all__ = ["StepFailed", "only_retryable", "step_failure"]


class StepFailed(Exception):
    """A step failed. The message names the system and the error class, nothing else."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def step_failure(system: str, exc: BaseException) -> StepFailed:
    """Translate any error into a PII-free StepFailed; the original never reaches Prefect."""
    summary = exc.summary() if isinstance(exc, IntegrationError) else type(exc).__name__
    return StepFailed(f"{system}: {summary}", retryable=isinstance(exc, RetryableError))


def only_retryable(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect retry condition: retry timeouts, 429 and 5xx; never auth or bad-request errors."""
    try:
        state.result()
    except StepFailed as exc:
        return exc.retryable
    except Exception:
        return False
    return False

"""What every task shares: the retry rule and the PII-free failure Prefect gets to see."""

from __future__ import annotations

from typing import Any, ParamSpec, TypeVar

from prefect import Task
from prefect.client.schemas.objects import State, TaskRun

from dsar.settings import Settings
from integrations.errors import IntegrationError, RetryableError

__all__ = ["StepFailed", "only_retryable", "step_failure", "with_retries"]

P = ParamSpec("P")
R = TypeVar("R")


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


def with_retries(step: Task[P, R], settings: Settings) -> Task[P, R]:
    """The step with the operator's retry budget (retried only when :func:`only_retryable`)."""
    return step.with_options(retries=settings.task_retries, retry_delay_seconds=settings.task_retry_delay_s)

"""What the subject's answer came to, and whether the request's flow must be started again."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from dsar.ledger.models import Request, RequestStatus

__all__ = ["WAIT_ENDED", "Answer", "lock_request", "needs_restart"]

WAIT_ENDED = "awaiting_identity"  # checkpoint: the flow stopped waiting; a verification restarts it


@dataclass(frozen=True)
class Answer:
    """The outcome of one answer from the subject; ``reason`` is a short PII-free code."""

    verified: bool
    reason: str | None = None
    request_id: str | None = None
    request_type: str | None = None
    language: str = "nb"
    restart: bool = False  # the flow stopped waiting: whoever recorded this starts it again


def lock_request(session: Session, request_id: str) -> Request:
    """The request row, locked: the flow's "stop waiting" and an answer are serialised."""
    request = session.get(Request, request_id, with_for_update=True, populate_existing=True)
    assert request is not None
    return request


def needs_restart(request: Request) -> bool:
    return request.status is RequestStatus.AWAITING_SUBJECT and request.checkpoint == WAIT_ENDED

"""Tests that are not about identity verification start from a confirmed requester."""

from __future__ import annotations

from dsar.identity.service import record_review
from dsar.ledger import Ledger

__all__ = ["confirm_identity"]


def confirm_identity(ledger: Ledger, request_id: str) -> str:
    """Record an operator's approval, as for a requester already verified in the ticket."""
    record_review(
        ledger, request_id, decision="approve", operator="Test operator", reason="checked in the ticket"
    )
    return request_id

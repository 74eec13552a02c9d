"""Errors the command line and the intake endpoint answer as "bad input" (exit 2, HTTP 4xx).

Messages name the problem, never the personal data that caused it.
"""

from __future__ import annotations

__all__ = ["BadInput"]


class BadInput(ValueError):
    """The caller gave something we cannot accept; nothing was written."""

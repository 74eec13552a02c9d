"""What a system can do beyond look-up, export and erase: the other rights of GDPR chapter III.

Each ability is a small protocol a :class:`~integrations.base.System` implements only when the
vendor's API really allows it. The flows ask ``isinstance(client, Rectifies)``; a system without
the ability gets a manual task for an operator instead (never a silent skip).

* :class:`Rectifies` (Art. 16): overwrite the subject's name, e-mail or phone with corrected values.
* :class:`Restricts` (Art. 18): mark the subject's records restricted (stored, not processed), and
  lift the mark again.
* :class:`Suppresses` (Art. 21(2), Art. 7(3)): stop direct marketing to the subject (unsubscribe,
  opt-out), keeping the records the subject still has a contract for.

Semantics every implementation keeps, as for ``erase``: idempotent (a second call changes
nothing and still succeeds), the subject's records are found the same way ``lookup`` finds them,
and the outcome reports categories and counts, never values. Errors are those of
:mod:`integrations.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from integrations.base import Subject

__all__ = ["Corrections", "Rectifies", "Restricts", "RightOutcome", "Suppresses"]


@dataclass(frozen=True)
class Corrections:
    """The corrected values a subject asked for (Art. 16); None leaves a value as it is.

    Normalised like :class:`~integrations.base.Subject` (e-mail lower-case, phone E.164).
    Masked in repr: the values are personal data.
    """

    name: str | None = None
    email: str | None = None
    phone: str | None = None

    def __repr__(self) -> str:
        held = [k for k in ("name", "email", "phone") if getattr(self, k)]
        return f"Corrections(<masked: {', '.join(held) or 'empty'}>)"

    __str__ = __repr__

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the values to correct."""
        return tuple(k for k in ("name", "email", "phone") if getattr(self, k))


@dataclass(frozen=True)
class RightOutcome:
    """What a rectification, restriction or suppression did: method and counts by category."""

    system: str
    method: str
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@runtime_checkable
class Rectifies(Protocol):
    def rectify(self, subject: Subject, corrections: Corrections) -> RightOutcome:
        """Write ``corrections`` into every record of ``subject`` that holds those values."""


@runtime_checkable
class Restricts(Protocol):
    def restrict(self, subject: Subject) -> RightOutcome:
        """Mark every record of ``subject`` restricted, so it is stored but not processed."""

    def lift_restriction(self, subject: Subject) -> RightOutcome:
        """Remove the restriction mark again."""


@runtime_checkable
class Suppresses(Protocol):
    def suppress(self, subject: Subject) -> RightOutcome:
        """Stop direct marketing to ``subject``: unsubscribe and opt out everywhere in the system."""

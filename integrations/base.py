"""The contract every system implements, and the plain values that cross it.

A *system* is anything that may hold a data subject's personal data: a SaaS vendor reached
over HTTP, an internal database, a processor reached by e-mail. The flows only ever talk to
:class:`System`; they never know which vendor is behind it.

Values in and out are frozen dataclasses, never ORM rows or vendor JSON. A :class:`Subject`
masks itself in ``repr`` so it cannot leak into logs or Prefect by accident.

Semantics every implementation must keep:

* ``lookup`` answers definitely: a :class:`LookupResult` (possibly empty) or an error from
  :mod:`integrations.errors`. A failure is never reported as "nothing found".
* ``export`` returns every record the system holds on the subject, following pagination
  to the end.
* ``erase`` is idempotent: data already gone counts as success, so a re-run is safe.
  It reports what it did by category and count, never the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "ErasureOutcome",
    "Export",
    "LookupResult",
    "Record",
    "Subject",
    "System",
]


@dataclass(frozen=True)
class Subject:
    """Who a request is about. Normalised identifiers; masked in repr."""

    email: str | None = None
    phone: str | None = None
    name: str | None = None

    def __repr__(self) -> str:
        held = [k for k in ("email", "phone", "name") if getattr(self, k)]
        return f"Subject(<masked: {', '.join(held) or 'empty'}>)"

    __str__ = __repr__


@dataclass(frozen=True)
class Record:
    """One item of personal data as the system holds it.

    ``category`` is a data category from the processing register (e.g. ``contact``,
    ``note``, ``order``); ``fields`` are the values, faithful to the source.
    """

    category: str
    record_id: str
    fields: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Record({self.category}:{self.record_id}, {len(self.fields)} fields)"


@dataclass(frozen=True)
class LookupResult:
    """Whether the system holds the subject, and how much by category."""

    system: str
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return any(n > 0 for n in self.counts.values())

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Export:
    """Every record the system holds on the subject."""

    system: str
    records: tuple[Record, ...] = ()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.records:
            out[record.category] = out.get(record.category, 0) + 1
        return out


@dataclass(frozen=True)
class ErasureOutcome:
    """What an erasure did: method and per-category counts, never the values.

    ``retained`` counts what the system kept on purpose and can no longer be found by the
    subject's identifiers (e.g. invoices whose customer was anonymised, kept for bookkeeping);
    the legal basis comes from the processing register, not from the integration.
    """

    system: str
    method: str
    counts: Mapping[str, int] = field(default_factory=dict)
    retained: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@runtime_checkable
class System(Protocol):
    """One system that may hold personal data."""

    name: str
    kind: str

    def check(self) -> None:
        """Raise an :mod:`integrations.errors` error unless the system is reachable and authorised."""

    def lookup(self, subject: Subject) -> LookupResult:
        """Count what the system holds on ``subject``, by category."""

    def export(self, subject: Subject) -> Export:
        """Return every record the system holds on ``subject``."""

    def erase(self, subject: Subject) -> ErasureOutcome:
        """Erase or anonymise ``subject``'s data; already-gone data counts as success."""

    def close(self) -> None:
        """Release connections."""

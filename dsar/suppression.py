"""The suppression list: who must never get direct marketing again (GDPR Art. 21(2)-(3), Art. 7(3)).

An objection to direct marketing is absolute and must outlive the data: after the CRM contact is
unsubscribed (or erased), a later import of an old list would bring the person back. So the
objection is kept as keyed hashes of the e-mail address and phone number (HMAC with the ledger's
hash key: no one can read the identifiers back from it), and every import, campaign tool or
person can ask :func:`is_suppressed` before contacting someone. legal.md section 6: the minimal
record is justified by Art. 6(1)(c)/(f) and 21(3).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar.crypto import normalise_email, normalise_phone
from dsar.ledger.chain import append_event
from dsar.ledger.models import Suppression
from dsar.ledger.repository import Keys
from integrations.base import Subject

__all__ = ["Reason", "is_suppressed", "suppress"]

Reason = Literal["objection", "consent_withdrawn"]


def _keys(keys: Keys, email: str | None, phone: str | None) -> list[str]:
    hashed = [("email", keys.hash(email)), ("phone", keys.hash(phone))]
    return [f"{kind}:{value}" for kind, value in hashed if value]


def suppress(
    session: Session, *, keys: Keys, subject: Subject, reason: Reason, request_id: str | None
) -> int:
    """Add the subject's identifiers to the list (once each); returns how many entries are new."""
    added = 0
    for key in _keys(keys, subject.email, subject.phone):
        if session.scalar(select(Suppression.id).where(Suppression.key == key)) is None:
            session.add(
                Suppression(key=key, reason=reason, request_id=request_id, created_at=datetime.now(UTC))
            )
            added += 1
    session.flush()
    if request_id:
        append_event(
            session,
            request_id=request_id,
            kind="suppression.added",
            data={
                "reason": reason,
                "entries": added,
                "identifiers": [k.split(":")[0] for k in _keys(keys, subject.email, subject.phone)],
            },
        )
    return added


def is_suppressed(
    session: Session,
    *,
    keys: Keys,
    email: str | None = None,
    phone: str | None = None,
    region: str = "NO",
) -> bool:
    """True when either identifier (normalised, as for intake) is on the list."""
    wanted = _keys(
        keys, _normalised(normalise_email, email), _normalised(lambda p: normalise_phone(p, region), phone)
    )
    return (
        bool(wanted) and session.scalar(select(Suppression.id).where(Suppression.key.in_(wanted))) is not None
    )


def _normalised(normalise: Callable[[str], str], value: str | None) -> str | None:
    """The identifier as intake stores it; one that is not valid cannot be on the list as given."""
    if not value:
        return None
    try:
        return normalise(value)
    except ValueError:
        return value.strip()

"""The append-only, hash-chained event log of each request.

Each event's hash covers its request, sequence number, time, kind, data and the previous
event's hash, so editing or deleting any event breaks every hash after it. Database
triggers (see the migrations) refuse UPDATE and DELETE on the table; the chain catches
what a privileged hand might still do.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dsar.ledger.models import Event, Request

__all__ = ["GENESIS", "ChainCheck", "append_event", "as_utc", "chain_head", "lock_request", "verify_chain"]

GENESIS = "0" * 64
_MAX_RACES = 20


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    head: str
    broken_at: int | None = None  # seq of the first event that does not verify


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; SQLite hands back naive values that were written as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _digest(prev_hash: str, request_id: str, seq: int, at: datetime, kind: str, data: dict[str, Any]) -> str:
    body = json.dumps(
        {"request": request_id, "seq": seq, "at": as_utc(at).isoformat(), "kind": kind, "data": data},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _last(session: Session, request_id: str, *, lock: bool = False) -> Event | None:
    stmt = select(Event).where(Event.request_id == request_id).order_by(Event.seq.desc()).limit(1)
    # A locking read sees the newest committed row even inside an older snapshot.
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def lock_request(session: Session, request_id: str) -> None:
    """Take the request's row lock first in a transaction that will also insert rows pointing at it.

    On PostgreSQL an insert with a foreign key share-locks the request row; two such transactions
    that then append an event (which wants the row exclusively) deadlock. Locking first orders them.
    """
    session.execute(select(Request.id).where(Request.id == request_id).with_for_update())


def append_event(
    session: Session, *, request_id: str, kind: str, data: dict[str, Any] | None = None
) -> Event:
    """Append one event to the request's chain; concurrent writers retry on the seq race."""
    payload = json.loads(json.dumps(data or {}, default=str))
    # Serialise appends per request on servers with row locks (SQLite's BEGIN IMMEDIATE already
    # does); the unique (request_id, seq) constraint and the retry below remain the safety net.
    lock_request(session, request_id)
    for _ in range(_MAX_RACES):
        last = _last(session, request_id, lock=True)
        seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
        at = datetime.now(UTC)
        event = Event(
            request_id=request_id,
            seq=seq,
            occurred_at=at,
            kind=kind,
            data=payload,
            prev_hash=prev,
            hash=_digest(prev, request_id, seq, at, kind, payload),
        )
        try:
            with session.begin_nested():
                session.add(event)
            return event
        except IntegrityError:
            continue
    raise RuntimeError(f"could not append event to {request_id}: sequence contention")


def chain_head(session: Session, request_id: str) -> str:
    """The hash of the newest event, or the genesis hash."""
    last = _last(session, request_id)
    return last.hash if last else GENESIS


def verify_chain(session: Session, request_id: str) -> ChainCheck:
    """Recompute every hash of the request's chain in order."""
    prev, count = GENESIS, 0
    stmt = select(Event).where(Event.request_id == request_id).order_by(Event.seq)
    for count, event in enumerate(session.scalars(stmt), start=1):
        expected = _digest(prev, event.request_id, event.seq, event.occurred_at, event.kind, event.data)
        if event.seq != count or event.prev_hash != prev or event.hash != expected:
            return ChainCheck(ok=False, events=count, head=prev, broken_at=event.seq)
        prev = event.hash
    return ChainCheck(ok=True, events=count, head=prev)

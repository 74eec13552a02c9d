"""Which deadline alerts are due: a scan of the ledger for the deadline watch (``flows/deadlines.py``).

The rules, for ``today`` (a Europe/Oslo calendar date). "Due" is the effective due date of
:func:`dsar.ledger.repository.effective_due_date`: one month, plus the extension, plus the
days the clock stood still; "days left" is due minus today (0 on the last day).

* ``due_soon``: an open request with 0 to max(thresholds) days left, at the smallest threshold
  that is at least the days left (a watch that missed a day skips the stale larger ones). Key
  ``due_soon:<id>:<due>:<threshold>``: once per threshold and due date, so an extension re-arms it.
* ``overdue``: an open request whose due date has passed. Key ``overdue:<id>:<due>``.
* ``extension_decision``: an open request, not extended, within ``EXTENSION_WINDOW_DAYS`` (7) days
  of the end of its first month. Art. 12(3) allows the extension only with a notice and reasons
  sent inside that month, so a week is left to extend or to answer in time. Key
  ``extension_decision:<id>``.
* ``stuck``: an open request waiting for an operator (its status is ``awaiting_operator``, or a
  system row is) or for attention (``incomplete``), whose latest status event (registered, status,
  system awaiting operator) falls on or before ``today - stuck_after_days``; or waiting for the
  subject (an open identity suspension) since that day. Key ``stuck:<id>:<waiting>:<since>``.

While a request's clock is suspended (an open suspension) its deadline does not move closer, so
it gets no ``due_soon``, ``overdue`` or ``extension_decision`` alert; it becomes ``stuck`` instead.
Completed and closed requests never alert.

Candidates come from indexed queries, never a loop over every row: ``requests (status,
due_date)`` yields the open requests whose one-month due date is inside the horizon or past. The
effective date is never earlier than that date, so no request is missed; it is computed for
these candidates only, from the open requests' suspensions (rare; one join). Stuck requests come
from the status index and ``system_results (status)``, with a correlated MAX over each candidate's
own events (``events (request_id)``); open suspensions from ``suspensions (ended_on)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import ColumnElement, ScalarSelect, func, or_, select
from sqlalchemy.orm import Session

from dsar.calendar import OSLO, due_date, local_date
from dsar.ledger.chain import as_utc
from dsar.ledger.models import Event, Request, RequestStatus, Suspension, SystemResult, SystemStatus

__all__ = [
    "EXTENSION_WINDOW_DAYS",
    "Alert",
    "AlertKind",
    "Clock",
    "ReconcilerAction",
    "open_clocks",
    "reconciler_actions",
    "scan",
]

EXTENSION_WINDOW_DAYS = 7
OPEN_STATES = tuple(s for s in RequestStatus if s.is_open)
WAITING_STATES = (RequestStatus.AWAITING_OPERATOR, RequestStatus.INCOMPLETE)
STATUS_EVENTS = ("request.registered", "request.status", "system.awaiting_operator")

AlertKind = Literal["due_soon", "overdue", "extension_decision", "stuck"]
Pauses = dict[str, list[tuple[date, date | None]]]
Wait = tuple[Sequence[Any], str, date]  # (CLOCK_COLUMNS + one more, waiting state, since)
_IDS_PER_QUERY = 500
CLOCK_COLUMNS = (Request.id, Request.type, Request.status, Request.received_date, Request.extended)


@dataclass(frozen=True)
class Alert:
    """One thing the privacy team must know about one request; ``key`` makes it go out once."""

    kind: AlertKind
    request_id: str
    due_date: date
    days_left: int
    threshold: int | None
    key: str
    request_type: str = ""
    waiting: str | None = None  # stuck: awaiting_operator, incomplete or awaiting_subject
    since: date | None = None  # stuck: the day the wait began
    systems: tuple[str, ...] = ()  # stuck: the systems waiting for an operator


@dataclass(frozen=True)
class Clock:
    """An open request's deadline as of one day: ids, type, status and dates only."""

    request_id: str
    request_type: str
    status: str
    due: date  # the effective due date (as repository.effective_due_date)
    extended: bool
    suspended_now: bool

    def days_left(self, today: date) -> int:
        return (self.due - today).days


@dataclass(frozen=True)
class ReconcilerAction:
    """What the reconciler (flows/reconcile.py) did to a request: for the digest, ids and reasons only."""

    request_id: str
    action: Literal["restarted", "escalated"]
    why: str
    at: datetime


RECONCILER_EVENTS = {"reconcile.restarted": "restarted", "reconcile.escalated": "escalated"}


def reconciler_actions(session: Session, *, today: date) -> list[ReconcilerAction]:
    """The reconciler's restarts and escalations from yesterday 00:00 to the end of ``today`` (Oslo)."""
    start = datetime.combine(today - timedelta(days=1), time(), OSLO).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(), OSLO).astimezone(UTC)
    stmt = (
        select(Event.request_id, Event.kind, Event.data, Event.occurred_at)
        .where(Event.kind.in_(RECONCILER_EVENTS), Event.occurred_at >= start, Event.occurred_at < end)
        .order_by(Event.occurred_at, Event.id)
    )
    return [
        ReconcilerAction(rid, RECONCILER_EVENTS[kind], str((data or {}).get("why", "")), as_utc(at))  # type: ignore[arg-type]
        for rid, kind, data, at in session.execute(stmt)
    ]


def scan(session: Session, *, today: date, thresholds: Sequence[int], stuck_after_days: int) -> list[Alert]:
    """Every alert that applies on ``today`` (sent or not: the caller filters by key)."""
    if any(t < 0 for t in thresholds) or stuck_after_days < 1:
        raise ValueError("thresholds must be >= 0 days and stuck_after_days >= 1")
    horizon = today + timedelta(days=max([*thresholds, EXTENSION_WINDOW_DAYS]))
    pauses = _pauses(session)
    clocks = _clocks(session, today, pauses, Request.due_date <= horizon)
    alerts = [a for c in clocks for a in _deadline_alerts(c, today, sorted(thresholds))]
    alerts += _stuck_alerts(session, today, stuck_after_days, pauses)
    return sorted(alerts, key=lambda a: (a.due_date, a.request_id, a.key))


def open_clocks(session: Session, *, today: date) -> list[Clock]:
    """Every open request's clock, soonest due first (the daily digest)."""
    return sorted(_clocks(session, today, _pauses(session)), key=lambda c: (c.due, c.request_id))


def _clocks(session: Session, today: date, pauses: Pauses, *where: ColumnElement[bool]) -> list[Clock]:
    rows = session.execute(select(*CLOCK_COLUMNS).where(Request.status.in_(OPEN_STATES), *where))
    return [_clock(row, pauses.get(row[0], ()), today) for row in rows]


def _pauses(session: Session) -> Pauses:
    """The suspensions of every open request, by request id (rare: one small indexed join)."""
    stmt = (
        select(Suspension.request_id, Suspension.started_on, Suspension.ended_on)
        .join(Request, Request.id == Suspension.request_id)
        .where(Request.status.in_(OPEN_STATES))
    )
    pauses: Pauses = {}
    for request_id, started, ended in session.execute(stmt):
        pauses.setdefault(request_id, []).append((started, ended))
    return pauses


def _clock(row: Sequence[Any], pauses: Sequence[tuple[date, date | None]], today: date) -> Clock:
    """A request's clock from its CLOCK_COLUMNS and suspensions, as repository.effective_due_date."""
    request_id, request_type, status, received, extended = row[:5]
    suspended = sum(max(0, ((end or today) - start).days) for start, end in pauses)  # none before it starts
    return Clock(
        request_id=request_id,
        request_type=str(request_type),
        status=str(status),
        due=_due(received, bool(extended), suspended),
        extended=bool(extended),
        suspended_now=any(end is None for _, end in pauses),
    )


@lru_cache(maxsize=8192)
def _due(received: date, extended: bool, suspended_days: int) -> date:
    """calendar.due_date, remembered: many requests share a receipt day."""
    return due_date(received, extended=extended, suspended_days=suspended_days)


def _deadline_alerts(clock: Clock, today: date, thresholds: Sequence[int]) -> list[Alert]:
    if clock.suspended_now:
        return []
    due, left, rid = clock.due, clock.days_left(today), clock.request_id
    alerts: list[Alert] = []
    if left < 0:
        alerts.append(Alert("overdue", rid, due, left, None, f"overdue:{rid}:{due}", clock.request_type))
    threshold = next((t for t in thresholds if left <= t), None) if left >= 0 else None
    if threshold is not None:
        key = f"due_soon:{rid}:{due}:{threshold}"
        alerts.append(Alert("due_soon", rid, due, left, threshold, key, clock.request_type))
    if not clock.extended and 0 <= left <= EXTENSION_WINDOW_DAYS:
        key = f"extension_decision:{rid}"
        alerts.append(
            Alert("extension_decision", rid, due, left, EXTENSION_WINDOW_DAYS, key, clock.request_type)
        )
    return alerts


def _stuck_alerts(session: Session, today: date, after: int, pauses: Pauses) -> list[Alert]:
    last_day = today - timedelta(days=after)  # a wait that began on or before this day is stuck
    waits = _operator_waits(session, last_day) + _subject_waits(session, last_day)
    systems = _waiting_systems(
        session, [row[0] for row, waiting, _ in waits if waiting == "awaiting_operator"]
    )
    alerts = []
    for row, waiting, since in waits:
        clock = _clock(row, pauses.get(row[0], ()), today)
        alerts.append(_stuck(clock, waiting, since, today, after, systems.get(clock.request_id, ())))
    return alerts


def _stuck(clock: Clock, waiting: str, since: date, today: date, after: int, systems: Sequence[str]) -> Alert:
    return Alert(
        kind="stuck",
        request_id=clock.request_id,
        due_date=clock.due,
        days_left=clock.days_left(today),
        threshold=after,
        key=f"stuck:{clock.request_id}:{waiting}:{since}",
        request_type=clock.request_type,
        waiting=waiting,
        since=since,
        systems=tuple(systems) if waiting == "awaiting_operator" else (),
    )


def _operator_waits(session: Session, last_day: date) -> list[Wait]:
    """Requests waiting for an operator since ``last_day`` or before: (clock columns, state, since)."""
    cutoff = datetime.combine(last_day + timedelta(days=1), time(), OSLO).astimezone(UTC)
    last = _last_status_event()
    waiting_system = select(SystemResult.request_id).where(
        SystemResult.status == SystemStatus.AWAITING_OPERATOR
    )
    stmt = select(*CLOCK_COLUMNS, last).where(
        Request.status.in_(OPEN_STATES),
        or_(Request.status.in_(WAITING_STATES), Request.id.in_(waiting_system)),
        last < cutoff,
    )
    return [(row, _waiting(row[2]), local_date(as_utc(row[5]))) for row in session.execute(stmt)]


def _waiting(status: RequestStatus) -> str:
    return status.value if status in WAITING_STATES else "awaiting_operator"


def _last_status_event() -> ScalarSelect[datetime]:
    """When the request last changed state: a correlated MAX over its own events (indexed by request)."""
    return (
        select(func.max(Event.occurred_at))
        .where(Event.request_id == Request.id, Event.kind.in_(STATUS_EVENTS))
        .correlate(Request)
        .scalar_subquery()
    )


def _subject_waits(session: Session, last_day: date) -> list[Wait]:
    """Requests waiting for the subject (open suspension) since ``last_day`` or before."""
    stmt = (
        select(*CLOCK_COLUMNS, Suspension.started_on)
        .join(Suspension, Suspension.request_id == Request.id)
        .where(
            Suspension.ended_on.is_(None),
            Suspension.started_on <= last_day,
            Request.status.in_(OPEN_STATES),
        )
    )
    return [(row, "awaiting_subject", row[5]) for row in session.execute(stmt)]


def _waiting_systems(session: Session, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The systems waiting for an operator, for the requests ``ids`` (a few hundred per query)."""
    systems: dict[str, list[str]] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        stmt = (
            select(SystemResult.request_id, SystemResult.system)
            .where(
                SystemResult.status == SystemStatus.AWAITING_OPERATOR,
                SystemResult.request_id.in_(ids[start : start + _IDS_PER_QUERY]),
            )
            .order_by(SystemResult.request_id, SystemResult.system)
        )
        for rid, system in session.execute(stmt):
            systems.setdefault(rid, []).append(system)
    return {rid: tuple(names) for rid, names in systems.items()}

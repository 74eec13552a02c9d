"""The deadline scan on SQLite, PostgreSQL and MariaDB: hand-built requests at chosen dates."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from dsar.alerts import EXTENSION_WINDOW_DAYS, Alert, open_clocks, scan
from dsar.calendar import OSLO, due_date
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.models import RequestStatus, RequestType, Suspension, SystemStatus
from integrations.base import Subject

RECEIVED = date(2025, 3, 10)  # a Monday; the month ends on Thursday 10 April 2025
DUE = date(2025, 4, 10)
THRESHOLDS = (14, 7, 3, 1)
STUCK_AFTER = 3


def register(ledger: Ledger, received: date = RECEIVED, n: int = 0) -> str:
    subject = Subject(email=f"person{n}@example.no")
    with ledger.session() as session:
        request = repo.register_request(
            session,
            keys=ledger.keys,
            request_type=RequestType.ACCESS,
            subject=subject,
            received_at=datetime.combine(received, time(12), OSLO),
        )
        return request.id


def alerts_on(ledger: Ledger, today: date) -> list[Alert]:
    with ledger.session() as session:
        return scan(session, today=today, thresholds=THRESHOLDS, stuck_after_days=STUCK_AFTER)


def kinds(alerts: list[Alert], request_id: str) -> dict[str, Alert]:
    return {a.kind: a for a in alerts if a.request_id == request_id}


def set_status(ledger: Ledger, request_id: str, status: RequestStatus) -> None:
    with ledger.session() as session:
        repo.set_status(session, request=repo.get_request(session, request_id), status=status)


def test_due_soon_fires_at_the_smallest_threshold_reached(ledger: Ledger) -> None:
    request_id = register(ledger)
    assert due_date(RECEIVED) == DUE
    expected = {20: None, 14: 14, 10: 14, 7: 7, 4: 7, 3: 3, 2: 3, 1: 1, 0: 1}
    for days_left, threshold in expected.items():
        soon = kinds(alerts_on(ledger, DUE - timedelta(days=days_left)), request_id).get("due_soon")
        assert (soon.threshold if soon else None) == threshold, days_left
        if soon:
            assert (soon.due_date, soon.days_left) == (DUE, days_left)
            assert soon.key == f"due_soon:{request_id}:{DUE}:{threshold}"


def test_overdue_once_the_due_date_has_passed(ledger: Ledger) -> None:
    request_id = register(ledger)
    assert "overdue" not in kinds(alerts_on(ledger, DUE), request_id)
    found = kinds(alerts_on(ledger, DUE + timedelta(days=5)), request_id)
    assert set(found) == {"overdue"}
    assert found["overdue"].days_left == -5
    assert found["overdue"].key == f"overdue:{request_id}:{DUE}"


def test_extension_decision_in_the_last_week_of_the_first_month(ledger: Ledger) -> None:
    request_id = register(ledger)
    window_opens = DUE - timedelta(days=EXTENSION_WINDOW_DAYS)
    assert "extension_decision" not in kinds(alerts_on(ledger, window_opens - timedelta(days=1)), request_id)
    for today in (window_opens, DUE):
        decision = kinds(alerts_on(ledger, today), request_id)["extension_decision"]
        assert decision.key == f"extension_decision:{request_id}"
        assert decision.due_date == DUE


def test_an_extended_request_counts_to_its_extended_date(ledger: Ledger) -> None:
    request_id = register(ledger)
    with ledger.session() as session:
        repo.get_request(session, request_id).extended = True
    extended_due = due_date(RECEIVED, extended=True)
    assert kinds(alerts_on(ledger, DUE - timedelta(days=3)), request_id) == {}
    assert kinds(alerts_on(ledger, DUE + timedelta(days=3)), request_id) == {}, "not overdue"
    found = kinds(alerts_on(ledger, extended_due - timedelta(days=2)), request_id)
    assert set(found) == {"due_soon"}, "no extension decision once extended"
    assert found["due_soon"].key == f"due_soon:{request_id}:{extended_due}:3"


def test_closed_and_completed_requests_never_alert(ledger: Ledger) -> None:
    closed, completed = register(ledger, n=1), register(ledger, n=2)
    set_status(ledger, closed, RequestStatus.CLOSED)
    set_status(ledger, completed, RequestStatus.COMPLETED)
    today = datetime.now(OSLO).date() + timedelta(days=30)
    for day in (DUE - timedelta(days=1), DUE + timedelta(days=40), today):
        assert alerts_on(ledger, day) == []


def test_a_closed_suspension_moves_the_due_date(ledger: Ledger) -> None:
    request_id = register(ledger)
    add_suspension(ledger, request_id, RECEIVED + timedelta(days=2), RECEIVED + timedelta(days=7))
    with ledger.session() as session:
        effective = repo.effective_due_date(repo.get_request(session, request_id), DUE)
    assert effective == date(2025, 4, 15)  # 10 April + 5 days
    assert "overdue" not in kinds(alerts_on(ledger, DUE + timedelta(days=2)), request_id)
    soon = kinds(alerts_on(ledger, DUE + timedelta(days=2)), request_id)["due_soon"]
    assert (soon.due_date, soon.days_left, soon.threshold) == (effective, 3, 3)
    assert (
        kinds(alerts_on(ledger, effective + timedelta(days=1)), request_id)["overdue"].due_date == effective
    )


def test_an_open_suspension_stops_deadline_alerts_and_becomes_stuck(ledger: Ledger) -> None:
    request_id = register(ledger)
    started = DUE - timedelta(days=5)
    add_suspension(ledger, request_id, started, None)
    assert kinds(alerts_on(ledger, started + timedelta(days=STUCK_AFTER - 1)), request_id) == {}
    late = kinds(alerts_on(ledger, DUE + timedelta(days=10)), request_id)
    assert set(late) == {"stuck"}, "the clock stands still: not overdue"
    stuck = late["stuck"]
    assert (stuck.waiting, stuck.since) == ("awaiting_subject", started)
    assert stuck.key == f"stuck:{request_id}:awaiting_subject:{started}"
    assert stuck.days_left == 5


@pytest.mark.parametrize(
    ("status", "waiting"),
    [(RequestStatus.AWAITING_OPERATOR, "awaiting_operator"), (RequestStatus.INCOMPLETE, "incomplete")],
)
def test_a_request_waiting_too_long_is_stuck(ledger: Ledger, status: RequestStatus, waiting: str) -> None:
    now = datetime.now(OSLO).date()
    request_id = register(ledger, received=now)
    set_status(ledger, request_id, status)
    assert "stuck" not in kinds(alerts_on(ledger, now + timedelta(days=STUCK_AFTER - 1)), request_id)
    stuck = kinds(alerts_on(ledger, now + timedelta(days=STUCK_AFTER)), request_id)["stuck"]
    assert (stuck.waiting, stuck.since, stuck.threshold) == (waiting, now, STUCK_AFTER)
    assert stuck.key == f"stuck:{request_id}:{waiting}:{now}"


def test_a_system_waiting_for_an_operator_makes_the_request_stuck(ledger: Ledger) -> None:
    now = datetime.now(OSLO).date()
    request_id, other = register(ledger, received=now), register(ledger, received=now, n=1)
    set_status(ledger, request_id, RequestStatus.IN_PROGRESS)
    set_status(ledger, other, RequestStatus.IN_PROGRESS)
    with ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system="hr-binder", kind="manual")
        row.status = SystemStatus.AWAITING_OPERATOR
    found = alerts_on(ledger, now + timedelta(days=STUCK_AFTER))
    stuck = kinds(found, request_id)["stuck"]
    assert (stuck.waiting, stuck.systems) == ("awaiting_operator", ("hr-binder",))
    assert "stuck" not in kinds(found, other), "in progress with no waiting system"


def test_the_same_day_gives_the_same_keys(ledger: Ledger) -> None:
    for n in range(3):
        register(ledger, received=RECEIVED + timedelta(days=n), n=n)
    first, second = alerts_on(ledger, DUE), alerts_on(ledger, DUE)
    assert [a.key for a in first] == [a.key for a in second]
    assert len({a.key for a in first}) == len(first)


def test_open_clocks_list_open_requests_soonest_first(ledger: Ledger) -> None:
    later, sooner, closed = (register(ledger, received=RECEIVED + timedelta(days=d), n=d) for d in (9, 1, 0))
    set_status(ledger, closed, RequestStatus.CLOSED)
    with ledger.session() as session:
        clocks = open_clocks(session, today=DUE)
    assert [c.request_id for c in clocks] == [sooner, later]
    assert clocks[0].days_left(DUE) == (due_date(RECEIVED + timedelta(days=1)) - DUE).days


def add_suspension(ledger: Ledger, request_id: str, started: date, ended: date | None) -> None:
    with ledger.session() as session:
        session.add(
            Suspension(request_id=request_id, started_on=started, ended_on=ended, reason="identity requested")
        )

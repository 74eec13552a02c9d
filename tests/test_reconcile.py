"""The reconciler against a real Prefect server: open requests in the ledger, flow runs in given states.

Time moves through the reconciler's ``now`` (never by sleeping): a run that entered its state
"now" is stale two hours later. Flow runs are made with the Prefect client, as a killed process
or a failed start would leave them; the starter is a fake that records its calls, except in the
end-to-end test, where the real dispatch runs the access flow inline against the emulators.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import State
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled, Completed, Crashed, Failed, Paused, Running, Scheduled
from sqlalchemy import select

from dsar import intake
from dsar.calendar import OSLO
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, verify_chain
from dsar.ledger.models import AlertSent, Event, RequestStatus
from dsar.reconcile import Decision, LedgerView, Policy, RunView, decide
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.mailbox import Mailbox
from emulators.stack import EmulatorStack, emulator_stack
from flows.access import access_request
from flows.deadlines import deadline_watch
from flows.reconcile import reconcile
from integrations.base import Subject
from tasks.alerts import message_id
from tasks.reconcile import ARTIFACT_KEY, run_reconciler
from tests.conftest import flow_settings, make_settings
from tests.databases import make_database_url
from tests.identity_helpers import confirm_identity

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

PRIVACY = "personvern@fjordlys.example"
PEOPLE = [
    Subject(email=f"person{i}@example.no", phone=f"+47912345{i:02d}", name=f"Testperson Nummer{i}")
    for i in range(16)
]
LATER = timedelta(hours=2)  # past the 60 minutes after which a silent run is dead


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with make_database_url(request.param) as url:
        yield url


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with Mailbox() as box:
        yield box


@pytest.fixture
def rt(tmp_path: Path, ledger_url: str, mailbox: Mailbox) -> Iterator[Runtime]:
    settings = make_settings(tmp_path, ledger_url=ledger_url, smtp_port=mailbox.port, privacy_mailbox=PRIVACY)
    runtime = Runtime(settings=settings, ledger=Ledger(settings), specs=())
    with using(runtime):
        yield runtime
    runtime.close()


class FakeStarter:
    """Records (request id, type, occasion); optionally leaves a run in Prefect as a real start would."""

    def __init__(self, leave: State[Any] | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.leave = leave
        self._lock = threading.Lock()

    def __call__(self, request_id: str, request_type: str, occasion: str) -> None:
        with self._lock:
            self.calls.append((request_id, request_type, occasion))
        if self.leave is not None:
            make_run(request_id, self.leave)


def register(
    ledger: Ledger, who: int, request_type: str = "access", status: RequestStatus | None = None
) -> str:
    person = PEOPLE[who]
    subject = intake.build_subject(email=person.email, phone=person.phone, name=person.name)
    request_id = intake.register(ledger, request_type=request_type, subject=subject).request_id
    if status is not None:
        with ledger.session() as session:
            repo.set_status(session, request=repo.get_request(session, request_id), status=status)
    return request_id


def record(ledger: Ledger, request_id: str, kind: str, data: dict[str, Any]) -> None:
    with ledger.session() as session:
        append_event(session, request_id=request_id, kind=kind, data=data)


def make_run(request_id: str, *states: State[Any], request_type: str = "access") -> str:
    """A flow run of the request's flow, named as the flow names it, moved through ``states``."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(
            access_request, name=f"{request_type}-{request_id}", parameters={"request_id": request_id}
        )
        for state in states:
            client.set_flow_run_state(run.id, state, force=True)
        return str(run.id)


def run_state(run_id: str) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
        return state.type if state else None


def events(ledger: Ledger, request_id: str, kind: str) -> list[dict[str, Any]]:
    with ledger.session() as session:
        stmt = (
            select(Event.data).where(Event.request_id == request_id, Event.kind == kind).order_by(Event.seq)
        )
        return list(session.scalars(stmt))


def assert_no_personal_data(text: str) -> None:
    for person in PEOPLE:
        for value in (person.email, person.phone, person.name, (person.name or "").split()[-1]):
            assert value
            assert value not in text, value


def test_dead_or_missing_runs_are_restarted_and_live_ones_left_alone(rt: Runtime) -> None:
    ledger, now = rt.ledger, datetime.now(UTC)
    ids = {
        "start_failed": register(ledger, 0),
        "failed": register(ledger, 1),
        "crashed": register(ledger, 2),
        "cancelled": register(ledger, 3),
        "stale": register(ledger, 4, "erasure"),
        "completed_open": register(ledger, 5),
        "paused": register(ledger, 6),
        "scheduled": register(ledger, 7),
        "subject": register(ledger, 8, status=RequestStatus.AWAITING_SUBJECT),
        "closed": register(ledger, 9, status=RequestStatus.CLOSED),
        "completed": register(ledger, 10, status=RequestStatus.COMPLETED),
    }
    record(ledger, ids["start_failed"], "flow.start_failed", {"error": "ConnectError", "via": "intake"})
    make_run(ids["failed"], Running(), Failed())
    make_run(ids["crashed"], Running(), Crashed())
    make_run(ids["cancelled"], Running(), Cancelled())
    stale = make_run(ids["stale"], Running(), request_type="erasure")  # its process was killed
    make_run(ids["completed_open"], Running(), Completed())
    make_run(ids["paused"], Running(), Paused())
    make_run(ids["scheduled"], Scheduled())
    make_run(ids["subject"], Running(), Completed())  # stopped to wait for the subject: not ours
    make_run(ids["closed"], Running(), Failed())

    starter = FakeStarter()
    summary = run_reconciler(now + LATER, starter)

    restarted = ["start_failed", "failed", "crashed", "cancelled", "stale", "completed_open"]
    expected = {(ids[k], "erasure" if k == "stale" else "access", "reconcile-1") for k in restarted}
    assert set(starter.calls) == expected
    assert len(starter.calls) == len(expected)
    assert sorted(summary.restarted) == sorted(ids[k] for k in restarted)
    assert summary.escalated == []
    assert summary.failed == []
    assert summary.checked == 8  # open ones; waiting for the subject and finished ones are not
    for why in restarted:
        [event] = events(ledger, ids[why], "reconcile.restarted")
        assert (event["attempt"], event["why"]) == (1, why)
        assert set(event) == {"attempt", "why", "run", "progress", "at"}
    assert run_state(stale) is StateType.CRASHED, "the dead run is marked crashed in Prefect"
    for quiet in ("paused", "scheduled", "subject", "closed", "completed"):
        assert events(ledger, ids[quiet], "reconcile.restarted") == []
    with ledger.session() as session:
        assert all(verify_chain(session, rid).ok for rid in ids.values())
    assert summary.actions["none:paused"] == summary.actions["none:queued"] == 1

    again = FakeStarter()
    second = run_reconciler(now + LATER, again)
    assert again.calls == [], "restarted for the same reason already: its run is on its way"
    assert second.actions["none:restart_pending"] == len(restarted)

    with ledger.session() as session:  # what the reconciler wrote names ids, states and hashes only
        data = session.scalars(select(Event.data).where(Event.kind.like("reconcile.%")))
        assert_no_personal_data(repr(list(data)))
    assert_no_personal_data(summary.markdown(now))


def test_a_live_run_and_a_request_just_registered_are_left_alone(rt: Runtime) -> None:
    now = datetime.now(UTC)
    running = register(rt.ledger, 0)
    make_run(running, Running())
    fresh = register(rt.ledger, 1)  # the intake is starting it right now
    active = register(rt.ledger, 2)
    make_run(active, Running())
    starter = FakeStarter()
    summary = run_reconciler(now, starter)
    assert starter.calls == []
    assert summary.actions == {"none:running": 2, "none:starting": 1}
    # Forty minutes on both runs are young still; the request without a run lost its start.
    assert run_reconciler(now + timedelta(minutes=40), starter).actions["none:running"] == 2
    assert starter.calls == [(fresh, "access", "reconcile-1")]
    assert active != running


def test_a_ledger_event_or_a_heartbeat_is_a_sign_of_life() -> None:
    start = datetime(2025, 4, 8, 9, tzinfo=UTC)
    run = RunView(id="run-1", state="RUNNING", state_name="Running", since=start, created=start)
    view = LedgerView(
        request_id="dsar-000000000001",
        request_type="access",
        status=RequestStatus.IN_PROGRESS,
        checkpoint="registered",
        progress="abc",
        last_activity=start + timedelta(minutes=50),  # a system answered, no state change since
        last_kind="system.looked_up",
        last_status_at=start,
        start_failed=False,
    )
    policy, never, beats = Policy(), (lambda _run, _since: False), (lambda _run, _since: True)
    assert decide(view, run, start + timedelta(minutes=100), policy, never).why == "running"
    assert decide(view, run, start + timedelta(minutes=111), policy, never) == Decision(
        "restart", "stale", "run-1"
    )
    assert decide(view, run, start + timedelta(minutes=111), policy, beats).why == "running"


def test_a_long_pause_is_escalated_once_by_mail(rt: Runtime, mailbox: Mailbox) -> None:
    now = datetime.now(UTC)
    request_id = register(rt.ledger, 0, "erasure")
    run = make_run(request_id, Running(), Paused(), request_type="erasure")
    starter = FakeStarter()
    assert run_reconciler(now + timedelta(hours=47), starter).escalated == []
    first = run_reconciler(now + timedelta(hours=49), starter)
    second = run_reconciler(now + timedelta(hours=50), starter)
    assert first.escalated == [request_id]
    assert second.escalated == []
    assert second.actions == {"none:escalated": 1}
    assert starter.calls == [], "a run waiting for a human is not restarted"
    [event] = events(rt.ledger, request_id, "reconcile.escalated")
    assert (event["why"], event["run"]) == ("paused", run)
    [mail] = mailbox.to(PRIVACY)
    assert str(mail["Message-ID"]) == message_id(event["key"])
    assert request_id in str(mail["Subject"])
    assert "Prefect" in mail.get_content()
    assert_no_personal_data(mail.as_string())
    with rt.ledger.session() as session:
        assert list(session.scalars(select(AlertSent.kind).where(AlertSent.key == event["key"]))) == [
            "reconcile"
        ]


def test_restarts_without_progress_end_in_one_escalation(rt: Runtime, mailbox: Mailbox) -> None:
    now = datetime.now(UTC)
    request_id = register(rt.ledger, 0)
    make_run(request_id, Running(), Crashed())
    starter = FakeStarter()  # starts nothing: the request never moves
    for hours in (2, 4, 6, 8, 10):
        run_reconciler(now + timedelta(hours=hours), starter)
    assert [c[2] for c in starter.calls] == ["reconcile-1", "reconcile-2", "reconcile-3"]
    [escalated] = events(rt.ledger, request_id, "reconcile.escalated")
    assert (escalated["why"], escalated["restarts"]) == ("no_progress", 3)
    assert len(mailbox.to(PRIVACY)) == 1
    assert "3" in mailbox.to(PRIVACY)[0].get_content()


def test_an_incomplete_request_is_restarted_at_most_hourly(rt: Runtime) -> None:
    now = datetime.now(UTC)
    request_id = register(rt.ledger, 0, status=RequestStatus.INCOMPLETE)
    make_run(request_id, Running(), Failed())
    starter = FakeStarter(leave=Failed())  # each restart fails again: a system is still down
    assert run_reconciler(now, starter).restarted == [request_id]
    assert run_reconciler(now + timedelta(minutes=30), starter).actions == {"none:backoff": 1}
    assert run_reconciler(now + timedelta(minutes=61), starter).restarted == [request_id]
    assert [e["why"] for e in events(rt.ledger, request_id, "reconcile.restarted")] == ["incomplete"] * 2
    assert [c[2] for c in starter.calls] == ["reconcile-1", "reconcile-2"]


def test_a_restart_that_cannot_start_is_recorded_and_retried(rt: Runtime) -> None:
    now = datetime.now(UTC)
    request_id = register(rt.ledger, 0)
    record(rt.ledger, request_id, "flow.start_failed", {"error": "ConnectError", "via": "intake"})

    def broken(request_id: str, request_type: str, occasion: str) -> None:
        raise ConnectionError("the Prefect API is down")

    assert run_reconciler(now, broken).failed == [request_id]
    [failed] = events(rt.ledger, request_id, "reconcile.restart_failed")
    assert (failed["attempt"], failed["error"]) == (1, "ConnectionError")
    starter = FakeStarter()
    run_reconciler(now + timedelta(minutes=10), starter)
    assert starter.calls == [(request_id, "access", "reconcile-2")]


def test_two_reconcilers_at_once_restart_each_request_once(rt: Runtime) -> None:
    now = datetime.now(UTC)
    ids = [register(rt.ledger, i) for i in range(4)]
    for request_id in ids:
        make_run(request_id, Running(), Crashed())
    starter = FakeStarter()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait()
            run_reconciler(now + LATER, starter)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(c[0] for c in starter.calls) == sorted(ids)
    for request_id in ids:
        assert len(events(rt.ledger, request_id, "reconcile.restarted")) == 1


def test_the_digest_lists_what_the_reconciler_did(rt: Runtime, mailbox: Mailbox) -> None:
    now = datetime.now(UTC)
    restarted = register(rt.ledger, 0)
    make_run(restarted, Running(), Failed())
    paused = register(rt.ledger, 1)
    make_run(paused, Running(), Paused())
    run_reconciler(now + timedelta(hours=49), FakeStarter())
    deadline_watch(datetime.now(OSLO).date().isoformat())
    digest = next(m for m in mailbox.to(PRIVACY) if "digest" in str(m["Message-ID"]))
    body = digest.get_content()
    assert f"- {restarted}  startet på nytt (failed)" in body
    assert f"- {paused}  varslet (paused)" in body
    assert_no_personal_data(body)


def test_the_reconciler_runs_every_ten_minutes_and_takes_only_a_time() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    from dsar.deployments import scheduled_deployments
    from flows.reconcile import CRON, DEPLOYMENT, scheduled_deployment

    served = scheduled_deployment()
    assert (served.name, served.concurrency_limit, CRON) == (DEPLOYMENT, 1, "*/10 * * * *")
    [schedule] = [s.schedule for s in served.schedules or []]
    assert isinstance(schedule, CronSchedule)
    assert schedule.timezone == "Europe/Oslo"
    assert list(reconcile.parameters.properties) == ["now"]
    assert reconcile.parameters.required == []
    assert ("reconcile", DEPLOYMENT) in {(d.flow_name, d.name) for d in scheduled_deployments()}


# --- end to end: a killed access flow, restarted by the real dispatch ----------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path / "systems", only=("hubspot-crm", "app-db")) as started:
        yield started


def test_a_killed_access_flow_is_restarted_and_completes(
    stack: EmulatorStack, ledger_url: str, tmp_path: Path
) -> None:
    settings = flow_settings(tmp_path, ledger_url, stack.systems_file, stack.mailbox.port, dispatch="inline")
    runtime = Runtime.from_settings(settings)
    with using(runtime):
        subject = intake.build_subject(
            email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name
        )
        request_id = intake.register(runtime.ledger, request_type="access", subject=subject).request_id
        confirm_identity(runtime.ledger, request_id)
        with runtime.ledger.session() as session:  # the flow had begun when its process was killed
            repo.set_status(
                session, request=repo.get_request(session, request_id), status=RequestStatus.IN_PROGRESS
            )
        killed = make_run(request_id, Running())  # SIGKILL: Prefect still says "running"

        counts = reconcile((datetime.now(UTC) + LATER).isoformat())

        assert counts["restarted"] == 1
        assert counts["restart_failed"] == 0
        with runtime.ledger.session() as session:
            request = repo.get_request(session, request_id)
            assert request.status is RequestStatus.COMPLETED
            assert verify_chain(session, request_id).ok
        [event] = events(runtime.ledger, request_id, "reconcile.restarted")
        assert (event["why"], event["run"], event["attempt"]) == ("stale", killed, 1)
        assert run_state(killed) is StateType.CRASHED
        artifact = Artifact.get(ARTIFACT_KEY)
        published = str(getattr(artifact, "data", ""))
        assert request_id in published
        assert DEMO_SUBJECT.email not in published
        # The next pass finds the request finished: nothing to do.
        assert reconcile((datetime.now(UTC) + LATER).isoformat())["checked"] == 0
    runtime.close()

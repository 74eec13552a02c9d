"""The fault scenarios of issue 8: break something on purpose, let the pipeline heal, check the end.

Each scenario runs real requests against the emulators (real HTTP, real SQL, real SMTP on
loopback), injects its fault, lets the pipeline recover by its own means (HTTP retries, Prefect
task retries, the reconciler restarting a request from its ledger checkpoint), and then checks the
end state with :func:`check_end_state`: every request complete or explicitly escalated, every
system's answer definite, no system erased twice, every mail delivered exactly once (the mailbox
counted by Message-ID against the outbox), one readable certificate or report.

A scenario is a function ``(folder, ledger kind) -> None`` that raises :class:`Unsurvived` (or
any error) when the pipeline did not survive. ``tests/test_faults.py`` runs the ones that fit CI
under pytest; ``scripts/fault_scenarios.py`` runs all twelve and prints the table. Both need a
Prefect API (the test harness, or :func:`prefect_api` in the script).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from pydantic import SecretStr
from sqlalchemy import func, select

from dsar import dispatch, intake
from dsar.cli import LEASE_STORAGE
from dsar.deployments import zendesk_commenter
from dsar.intake_api import create_intake_app
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import verify_chain
from dsar.ledger.models import Document, Event, MailStatus, OutboxMail, Request, RequestStatus
from dsar.reconcile import Summary
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.operator import AnswerFor, Operator
from emulators.stack import EmulatorStack, emulator_stack
from flows.deadlines import deadline_watch
from tasks.reconcile import run_reconciler
from tests.conftest import flow_settings
from tests.databases import make_database_url
from tests.documents_helpers import stored_pdf_text
from tests.identity_helpers import confirm_identity
from tests.prefect_server import BIN, free_port, prefect_env, stop, wait_healthy

__all__ = [
    "CI_SCENARIOS",
    "SCENARIOS",
    "Scenario",
    "Unsurvived",
    "World",
    "check_end_state",
    "prefect_api",
    "world",
]

ROOT = Path(__file__).resolve().parents[1]
# Three systems with an API (token, OAuth with refresh, basic auth) and one SQL database; no
# manual system, so no operator form but the erasure approval where a scenario wants one.
SYSTEMS = ("hubspot-crm", "app-db", "zendesk-support", "poweroffice-go")
LATER = timedelta(hours=2)  # past the reconciler's 60 minutes after which a silent run is dead
OPERATOR = "Fault-scenario operator"
WEBHOOK_SECRET = "fault-scenario-webhook-secret"  # a test value


class Unsurvived(AssertionError):
    """The pipeline did not survive the fault; the message says what was wrong at the end."""


def check(condition: object, reason: str) -> None:
    if not condition:
        raise Unsurvived(reason)


# --- a world: emulators, a ledger, the runtime ------------------------------------------------------


@dataclass
class World:
    stack: EmulatorStack
    rt: Runtime
    folder: Path
    kind: str
    requests: list[str] = field(default_factory=list)

    @property
    def ledger(self) -> Ledger:
        return self.rt.ledger

    def submit(self, request_type: str) -> str:
        """Kari's request, identity confirmed, as the intake and the ticket leave it."""
        subject = intake.build_subject(
            email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name
        )
        registered = intake.register(self.ledger, request_type=request_type, subject=subject, language="en")
        self.requests.append(registered.request_id)
        return confirm_identity(self.ledger, registered.request_id)

    def events(self, request_id: str, kind: str) -> list[dict[str, Any]]:
        """The request's events of ``kind`` (read through the ledger's retrying transaction)."""
        stmt = (
            select(Event.data).where(Event.request_id == request_id, Event.kind == kind).order_by(Event.seq)
        )
        return self.ledger.transaction(lambda session: list(session.scalars(stmt)))

    def status(self, request_id: str) -> RequestStatus:
        return self.ledger.transaction(lambda session: repo.get_request(session, request_id).status)

    def run_flow(self, request_type: str, request_id: str) -> BaseException | None:
        """The request's flow in this process, as ``dispatch.start`` runs it inline; its error, if any."""
        try:
            dispatch.start(request_id, request_type, mode="inline")
        except Exception as exc:  # the fault may fail the run: healing it is the reconciler's job
            return exc
        return None

    def reconcile(self, now: datetime) -> Summary:
        """One reconciler pass at ``now``, restarting with the real starter (dispatch, inline)."""
        return run_reconciler(now)

    def heal(self, *request_ids: str, rounds: int = 4) -> list[Summary]:
        """Reconciler passes, two hours apart, until the requests are no longer open (or rounds end)."""
        passes: list[Summary] = []
        now = datetime.now(UTC)
        for round_ in range(1, rounds + 1):
            if all(not self.status(rid).is_open for rid in request_ids):
                break
            passes.append(self.reconcile(now + LATER * round_))
        return passes

    def heal_elsewhere(self, *request_ids: str, rounds: int = 4, timeout_s: float = 600) -> None:
        """:meth:`heal`, but each pass is the reconciler flow in a separate process (as it is served):
        it talks only to the Prefect API of :meth:`worker_env`, whatever this process holds."""
        script = (
            "import sys\n"
            "from dsar.runtime import Runtime, using\n"
            "from dsar.settings import Settings\n"
            "from flows.reconcile import reconcile\n"
            "with using(Runtime.from_settings(Settings())):\n"
            "    reconcile(sys.argv[1])\n"
        )
        now = datetime.now(UTC)
        for round_ in range(1, rounds + 1):
            if all(not self.status(rid).is_open for rid in request_ids):
                return
            with (self.folder / "reconciler.log").open("ab") as log:
                subprocess.run(
                    [sys.executable, "-c", script, (now + LATER * round_).isoformat()],
                    env=self.worker_env(DSAR_DISPATCH="inline", DSAR_HTTP_TIMEOUT_S="10"),
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout_s,
                    check=False,
                )

    def worker_env(self, **extra: str) -> dict[str, str]:
        """The environment of a separate process running flows with this world's settings."""
        s = self.rt.settings
        env = {
            **os.environ,
            "DSAR_VAR_DIR": str(s.var_dir),
            "DSAR_ENCRYPTION_KEY": s.secret("encryption_key"),
            "DSAR_HASH_KEY": s.secret("hash_key"),
            "DSAR_LEDGER_URL": s.ledger_url,
            "DSAR_SYSTEMS_FILE": str(s.systems_file),
            "DSAR_SMTP_PORT": str(s.smtp_port),
            "DSAR_ERASURE_APPROVAL": s.erasure_approval,
            "DSAR_OPERATOR_POLL_S": str(s.operator_poll_s),
            "DSAR_TASK_RETRIES": str(s.task_retries),
            "DSAR_TASK_RETRY_DELAY_S": str(s.task_retry_delay_s),
            "DSAR_HTTP_BACKOFF_BASE_S": str(s.http_backoff_base_s),
            "DSAR_HTTP_MAX_ATTEMPTS": str(s.http_max_attempts),
            "DSAR_HTTP_TIMEOUT_S": "120",  # a hang lasts until the process is killed
            "DSAR_PROCESSOR_LANGUAGE": "en",
            "PREFECT_API_URL": _api_url(),
        }
        return env | extra

    def spawn(self, request_type: str, request_id: str, **env: str) -> subprocess.Popen[bytes]:
        """The request's flow in a separate process (one we may SIGKILL)."""
        script = (
            "import sys\n"
            "from dsar import dispatch\n"
            "from dsar.runtime import Runtime, using\n"
            "from dsar.settings import Settings\n"
            "with using(Runtime.from_settings(Settings())):\n"
            "    dispatch.start(sys.argv[1], sys.argv[2], mode='inline')\n"
        )
        log = (self.folder / f"worker-{request_id}.log").open("ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-c", script, request_id, request_type],
                env=self.worker_env(**env),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()


@contextmanager
def world(
    folder: Path, kind: str, *, systems: tuple[str, ...] = SYSTEMS, **overrides: object
) -> Iterator[World]:
    """Emulators, a fresh ledger of ``kind`` and a runtime whose reconciler restarts inline."""
    with make_database_url(kind) as url, emulator_stack(folder / "systems", only=systems) as stack:
        values: dict[str, object] = {"processor_language": "en", "dispatch": "inline"} | overrides
        settings = flow_settings(folder, url, stack.systems_file, stack.mailbox.port, **values)
        runtime = Runtime.from_settings(settings)
        try:
            with using(runtime):
                yield World(stack=stack, rt=runtime, folder=folder, kind=kind)
        finally:
            runtime.close()


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


class RequestOperator(Operator):
    """The demo operator, answering only the paused runs of these requests (other runs are not ours)."""

    def __init__(self, request_ids: list[str], answer_for: AnswerFor) -> None:
        super().__init__(answer_for, poll_s=0.3)
        self._names = request_ids

    def poll(self) -> None:
        for run in _runs_of(self._names):
            if run.state is not None and run.state.type is StateType.PAUSED:
                key = str(run.state.state_details.pause_key)
                resume_flow_run(run.id, run_input=self._answer_for(key))
                self.answered.append(key)


def approve(key: str) -> dict[str, object]:
    if key == "approve-erasure":
        return {"decision": "approve", "operator": OPERATOR, "reason": "Plan checked against the case."}
    raise Unsurvived(f"an operator form no scenario expects: {key}")


def _runs_of(request_ids: list[str]) -> list[Any]:
    names = [f"{t}-{rid}" for rid in request_ids for t in ("access", "erasure")]
    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=names))))


def _cancel_unfinished(request_ids: list[str]) -> None:
    """End the runs a scenario leaves behind on purpose (a pause nobody answers) in Prefect."""
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        for run in _runs_of(request_ids):
            if run.state is not None and not run.state.is_final():
                client.set_flow_run_state(run.id, Cancelled(), force=True)


def wait_for(
    condition: Callable[[], object], what: str, *, timeout_s: float = 90, worker: Any = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if worker is not None and worker.poll() is not None:
            raise Unsurvived(f"the worker process ended early ({worker.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise Unsurvived(f"timed out waiting for {what}")
        time.sleep(0.2)


def kill(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)


# --- the end state ----------------------------------------------------------------------------------


def check_end_state(w: World, *, escalated: tuple[str, ...] = ()) -> None:
    """Every request complete (or escalated, if expected), answers definite, erasures and mail once."""
    for rid in w.requests:
        with w.ledger.session() as session:
            request = repo.get_request(session, rid)
            status, request_type = request.status, request.type.value
            systems = {row.system: row.status for row in request.systems}
            check(verify_chain(session, rid).ok, f"{rid}: the ledger's event chain is broken")
        if rid in escalated:
            check(status.is_open, f"{rid}: expected open and escalated, is {status.value}")
            check(w.events(rid, "reconcile.escalated"), f"{rid}: open but never escalated")
            continue
        check(status is RequestStatus.COMPLETED, f"{rid}: {request_type} ended {status.value}, not completed")
        vague = sorted(name for name, st in systems.items() if not st.is_definite)
        check(not vague, f"{rid}: no definite answer from {', '.join(vague)}")
        erased = Counter(e["system"] for e in w.events(rid, "system.erased"))
        twice = sorted(name for name, n in erased.items() if n > 1)
        check(not twice, f"{rid}: erased twice in {', '.join(twice)}")
        _check_documents(w, rid, request_type)
    check_mail(w)


def _check_documents(w: World, rid: str, request_type: str) -> None:
    kind = "deletion_certificate" if request_type == "erasure" else "access_report"
    with w.ledger.session() as session:
        paths = list(
            session.scalars(
                select(Document.path)
                .where(Document.request_id == rid, Document.kind == kind)
                .order_by(Document.id)
            )
        )
    check(paths, f"{rid}: no {kind}")
    if request_type == "erasure":
        check(len(paths) == 1, f"{rid}: {len(paths)} deletion certificates, not one")
    try:
        text = stored_pdf_text(w.ledger, paths[-1])
    except Exception as exc:
        raise Unsurvived(f"{rid}: the {kind} is unreadable ({type(exc).__name__})") from exc
    check(rid in text, f"{rid}: the {kind} does not name its request")


def check_mail(w: World) -> None:
    """Each Message-ID in the mailbox once; every mail of the outbox sent and in the mailbox."""
    received = Counter(str(m["Message-ID"]) for m in w.stack.mailbox.messages)
    twice = sorted(mid for mid, n in received.items() if n > 1)
    check(not twice, f"mail sent twice: {', '.join(twice)}")
    with w.ledger.session() as session:
        rows = session.execute(select(OutboxMail.message_id, OutboxMail.status)).all()
    unsent = sorted(mid for mid, status in rows if status is not MailStatus.SENT)
    check(not unsent, f"{len(unsent)} mails still unsent in the outbox")
    lost = sorted(mid for mid, _ in rows if mid not in received)
    check(not lost, f"{len(lost)} mails marked sent never reached the mailbox")


# --- 1-5: a vendor misbehaves ----------------------------------------------------------------------


def rate_limited(folder: Path, kind: str) -> None:
    """HubSpot answers 429 with ``Retry-After: 60`` for a while; the client waits (capped) and retries.

    The window and the cap are short so the scenario fits CI; the mechanism is the real one: the
    vendor's header, the settings' ``retry_after_cap_s``, the HTTP client's wait, Prefect's retries.
    """
    window_s = 4.0
    with world(folder, kind, retry_after_cap_s=1.5, http_max_attempts=4) as w:
        hubspot = w.stack.hubspot
        rid = w.submit("access")
        hubspot.set_faults({"rate_limit_next": -1, "retry_after_s": 60})
        before = hubspot.request_count
        timer = threading.Timer(window_s, lambda: hubspot.set_faults({"rate_limit_next": 0}))
        started = time.monotonic()
        timer.start()
        try:
            w.run_flow("access", rid)
        finally:
            timer.cancel()
            hubspot.set_faults({"rate_limit_next": 0})
        check(hubspot.request_count - before >= 2, "HubSpot was never asked during its rate limit")
        check(time.monotonic() - started >= window_s, "the flow did not wait out the rate limit")
        w.heal(rid)
        check_end_state(w)
        check(not w.events(rid, "reconcile.restarted"), "retries alone should have sufficed")


def _erasure_with_fault_at_erase(w: World, system_faults: Callable[[], None]) -> str:
    """An erasure whose faults are switched on when the plan is approved: they meet the erase calls."""
    rid = w.submit("erasure")

    def answer(key: str) -> dict[str, object]:
        if key == "approve-erasure":
            system_faults()
        return approve(key)

    with RequestOperator([rid], answer):
        w.run_flow("erasure", rid)
    return rid


def server_errors(folder: Path, kind: str) -> None:
    """Zendesk answers 500 to its next three calls while it is being erased, then recovers."""
    with world(folder, kind, erasure_approval="operator") as w:
        zendesk = w.stack.states["zendesk-support"]
        rid = _erasure_with_fault_at_erase(w, lambda: zendesk.faults.update({"server_error_next": 3}))
        check(zendesk.faults.server_error_next == 0, "Zendesk's 5xx were never met")
        w.heal(rid)
        check_end_state(w)


def vendor_hangs(folder: Path, kind: str) -> None:
    """Zendesk hangs past the client's timeout on its first erase call (and finishes it late)."""
    with world(folder, kind, erasure_approval="operator", http_timeout_s=1.0) as w:
        zendesk = w.stack.states["zendesk-support"]
        rid = _erasure_with_fault_at_erase(w, lambda: zendesk.faults.update({"slow_next": 1, "slow_s": 3}))
        check(zendesk.faults.slow_next == 0, "Zendesk never hung")
        w.heal(rid)
        check_end_state(w)


def malformed_body(folder: Path, kind: str) -> None:
    """HubSpot answers a truncated HTML page as its JSON, twice: no guess is made of it, the system
    stays without an answer, and the reconciler restarts the incomplete request until HubSpot is sane."""
    with world(folder, kind) as w:
        hubspot = w.stack.hubspot
        rid = w.submit("access")
        hubspot.set_faults({"malformed_next": 2})
        w.run_flow("access", rid)
        check(w.status(rid) is RequestStatus.INCOMPLETE, "a malformed body did not leave the system open")
        w.heal(rid)
        check(hubspot.faults.malformed_next == 0, "HubSpot's malformed bodies were never met")
        check_end_state(w)


def token_expires(folder: Path, kind: str) -> None:
    """PowerOffice's access token expires while the request is collecting: 401, a fresh token, again."""
    with world(folder, kind) as w:
        poweroffice = w.stack.states["poweroffice-go"]
        poweroffice.faults.update({"latency_ms": 100})  # a vendor's round trip: the flow is mid-request
        rid = w.submit("access")
        expired = threading.Event()

        def expire_once_issued() -> None:
            while not expired.is_set():
                if poweroffice.tokens.issued >= 1:
                    poweroffice.tokens.expire_all()  # revoked server-side: the client still holds it
                    expired.set()
                time.sleep(0.01)

        watcher = threading.Thread(target=expire_once_issued, daemon=True)
        watcher.start()
        try:
            w.run_flow("access", rid)
        finally:
            expired.set()
            watcher.join()
        check(poweroffice.tokens.issued >= 2, "no fresh token was fetched after the expiry")
        w.heal(rid)
        check_end_state(w)
        check(not w.events(rid, "reconcile.restarted"), "the token refresh alone should have sufficed")


# --- 6, 7: the process running a flow is killed --------------------------------------------------


def killed_access(folder: Path, kind: str) -> None:
    """SIGKILL the process collecting an access request while Zendesk hangs; the reconciler restarts it."""
    with world(folder, kind) as w:
        zendesk = w.stack.states["zendesk-support"]
        rid = w.submit("access")
        zendesk.faults.update({"slow_next": 1, "slow_s": 60})
        worker = w.spawn("access", rid)
        try:
            wait_for(
                lambda: len(w.events(rid, "system.collected")) >= 2, "two systems collected", worker=worker
            )
        finally:
            kill(worker)
        zendesk.faults.update({"slow_next": 0})
        check(w.status(rid).is_open, "the request finished before the kill")
        _heal_killed(w, rid)


def _heal_killed(w: World, rid: str) -> None:
    [killed] = [run for run in _runs_of([rid]) if run.state and run.state.type is StateType.RUNNING]
    passes = w.heal(rid)
    check(passes and rid in passes[0].restarted, "the reconciler did not restart the killed run")
    [restart] = w.events(rid, "reconcile.restarted")[:1]
    check(restart["why"] == "stale" and restart["run"] == str(killed.id), f"restarted for {restart}")
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(killed.id).state
    check(state is not None and state.type is StateType.CRASHED, "the dead run is not marked crashed")
    check_end_state(w)


def killed_erasure(folder: Path, kind: str) -> None:
    """SIGKILL the erasure after some systems are erased and before Zendesk; restart by reconciler."""
    with world(folder, kind, erasure_approval="operator") as w:
        zendesk = w.stack.states["zendesk-support"]
        rid = w.submit("erasure")

        def answer(key: str) -> dict[str, object]:
            if key == "approve-erasure":  # Zendesk will hang on its first erase call
                zendesk.faults.update({"slow_next": 1, "slow_s": 60})
            return approve(key)

        worker = w.spawn("erasure", rid)
        try:
            with RequestOperator([rid], answer):
                wait_for(
                    lambda: len(w.events(rid, "system.erased")) >= 2, "two systems erased", worker=worker
                )
        finally:
            kill(worker)
        zendesk.faults.update({"slow_next": 0})
        erased = {e["system"] for e in w.events(rid, "system.erased")}
        check("zendesk-support" not in erased, "Zendesk was erased before the kill")
        with RequestOperator([rid], approve) as operator:
            _heal_killed(w, rid)
        check("approve-erasure" not in operator.answered, "the restart asked for approval again")
        _check_art19_once(w, rid)


def _check_art19_once(w: World, rid: str) -> None:
    told = Counter(
        str(m["To"]) for m in w.stack.mailbox.messages if ".art19-erasure." in str(m["Message-ID"])
    )
    check(told, f"{rid}: no recipient was told of the erasure")
    check(set(told.values()) == {1}, f"{rid}: recipients told more than once: {dict(told)}")


# --- 8: PostgreSQL restarts -----------------------------------------------------------------------


def postgres_restarts(folder: Path, kind: str) -> None:
    """The ledger's PostgreSQL is restarted while an erasure runs (script only: the server is shared)."""
    cluster = sorted(os.listdir("/etc/postgresql"))[-1]
    with world(folder, "postgresql") as w:
        zendesk = w.stack.states["zendesk-support"]
        rid = w.submit("erasure")
        zendesk.faults.update({"slow_next": 2, "slow_s": 4})  # keeps the flow busy through the restart
        errors: list[BaseException | None] = []
        flow = threading.Thread(target=lambda: errors.append(w.run_flow("erasure", rid)))
        flow.start()
        try:
            wait_for(lambda: w.events(rid, "system.looked_up"), "the first lookup")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"],
                check=True,
                capture_output=True,
                timeout=120,
            )
        finally:
            flow.join(300)
        check(not flow.is_alive(), "the erasure hangs after the restart")
        w.heal(rid)
        check_end_state(w)
        _check_art19_once(w, rid)


# --- 9: the SMTP server is down ------------------------------------------------------------------


def smtp_down(folder: Path, kind: str) -> None:
    """SMTP is down when the Art. 19 notices and the deadline alerts are due; it comes back."""
    with world(folder, kind, privacy_mailbox="personvern@fjordlys.example") as w:
        mailbox = w.stack.mailbox
        rid = w.submit("erasure")
        mailbox.down()
        try:
            w.run_flow("erasure", rid)  # erases, then cannot tell the recipients
            check(w.status(rid).is_open, "the erasure completed without telling the recipients")
            due = datetime.fromisoformat(_due_date(w, rid)).date()
            late = (due + timedelta(days=3)).isoformat()
            down = deadline_watch(late)  # overdue: an alert and the digest are due now
            check(down["queued"] >= 1 and down["sent"] == 0, f"the watch with SMTP down: {down}")
        finally:
            mailbox.up()
        check(not mailbox.messages, "mail arrived while the server was down")
        back = deadline_watch(late)
        check(back["sent"] >= 2, f"the watch did not deliver what was queued: {back}")
        w.heal(rid)
        deadline_watch(late)  # once more: nothing new, nothing twice
        check_end_state(w)
        _check_art19_once(w, rid)


def _due_date(w: World, rid: str) -> str:
    with w.ledger.session() as session:
        return repo.get_request(session, rid).due_date.isoformat()


# --- 10: the Prefect server restarts -----------------------------------------------------------


@dataclass
class RestartableServer:
    """`prefect server start` on a fixed port and home, that we stop and start again."""

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        log_file = self.home / "server.log"
        self.home.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=prefect_env(
                    self.home,
                    PREFECT_UI_API_URL=self.api_url,
                    # As README's Production section says: leases that outlive a restart.
                    PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=LEASE_STORAGE,
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_healthy(self.api_url, self.process, log_file)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


def prefect_restarts(folder: Path, kind: str) -> None:
    """A separate Prefect server is restarted while an access and an erasure run; the reconciler heals."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = RestartableServer(folder / "prefect")
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}), world(folder, kind) as w:
            zendesk = w.stack.states["zendesk-support"]
            access, erasure = w.submit("access"), w.submit("erasure")
            zendesk.faults.update({"slow_next": 2, "slow_s": 20})  # both are in flight at the restart
            workers = [w.spawn("access", access), w.spawn("erasure", erasure)]
            try:
                wait_for(
                    lambda: w.events(access, "system.collected") and w.events(erasure, "system.looked_up"),
                    "both flows under way",
                )
                server.stop()
                time.sleep(2)
                server.start()
                for worker in workers:
                    with suppress(subprocess.TimeoutExpired):
                        worker.wait(timeout=120)
            finally:
                for worker in workers:
                    kill(worker)
            zendesk.faults.update({"slow_next": 0})
            w.heal_elsewhere(access, erasure)
            check_end_state(w)
            _check_art19_once(w, erasure)
    finally:
        server.stop()


# --- 11: a human never approves ------------------------------------------------------------------


def approval_never_given(folder: Path, kind: str) -> None:
    """The erasure waits for an approval nobody gives: escalated once after the configured time."""
    hours = 24.0
    with world(folder, kind, erasure_approval="operator", reconcile_escalate_after_hours=hours) as w:
        rid = w.submit("erasure")
        worker = w.spawn("erasure", rid)
        try:
            wait_for(
                lambda: any(r.state and r.state.type is StateType.PAUSED for r in _runs_of([rid])),
                "the approval form",
                worker=worker,
            )
            now = datetime.now(UTC)
            early = w.reconcile(now + timedelta(hours=hours - 1))
            check(not early.escalated and not early.restarted, "acted before the configured time")
            first = w.reconcile(now + timedelta(hours=hours + 1))
            check(first.escalated == [rid], f"not escalated after {hours:g} hours: {first.actions}")
            again = w.reconcile(now + timedelta(hours=hours + 3))
            check(not again.escalated and not again.restarted, "escalated or restarted a second time")
        finally:
            kill(worker)
            _cancel_unfinished([rid])  # left paused, the next test's stand-in operator would answer it
        check(not w.events(rid, "system.erased"), "something was erased without approval")
        escalations = [m for m in w.stack.mailbox.messages if "reconcile" in str(m["Message-ID"])]
        check(len(escalations) == 1, f"{len(escalations)} escalation mails, not one")
        check(rid in str(escalations[0]["Subject"]), "the escalation mail does not name the request")
        check_end_state(w, escalated=(rid,))


# --- 12: the same webhook three times -------------------------------------------------------------


def webhook_three_times(folder: Path, kind: str) -> None:
    """Zendesk delivers the same ticket's webhook three times: one request, one start, one note."""
    with warnings.catch_warnings():  # Starlette 1 would rather drive its TestClient with httpx2
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from tests.test_intake_api import signed, webhook

    with world(folder, kind) as w:
        desk = w.stack.states["zendesk-support"]
        url = next(s["base_url"] for s in _systems(w) if s["name"] == "zendesk-support")
        settings = w.rt.settings.model_copy(
            update={
                "intake_zendesk_secret": SecretStr(WEBHOOK_SECRET),
                "ticketing_zendesk_url": url,
                "ticketing_zendesk_email": desk.agent_email,
                "ticketing_zendesk_token": SecretStr(desk.api_token),
            }
        )
        ticket = str(desk.add_ticket(desk.agent_id, "Innsyn", [(desk.agent_id, "Be om innsyn")]))
        starts: list[tuple[str, str]] = []
        app = create_intake_app(
            w.ledger,
            settings,
            start=lambda rid, t: starts.append((rid, t)),
            comment=zendesk_commenter(settings),
        )
        body = webhook(ticket) | {
            "requester": {"email": DEMO_SUBJECT.email, "phone": DEMO_SUBJECT.phone, "name": DEMO_SUBJECT.name}
        }
        raw = json.dumps(body).encode()
        with TestClient(app) as client:
            answers = [
                client.post("/intake/zendesk", content=raw, headers=signed(raw, secret=WEBHOOK_SECRET))
                for _ in range(3)
            ]
        codes = [a.status_code for a in answers]
        check(codes == [201, 200, 200], f"the intake answered {codes}")
        rids = {a.json()["request_id"] for a in answers}
        check(len(rids) == 1, f"three deliveries gave {len(rids)} requests")
        with w.ledger.session() as session:
            check(session.scalar(select(func.count(Request.id))) == 1, "more than one request in the ledger")
        check(len(starts) == 1, f"the flow was started {len(starts)} times")
        notes = desk.comments[int(ticket)][1:]  # after the ticket's own first comment
        check(len(notes) == 1, f"{len(notes)} notes on the ticket, not one")
        [(rid, request_type)] = starts
        w.requests.append(rid)
        confirm_identity(w.ledger, rid)  # the operator checked the requester in the ticket
        w.run_flow(request_type, rid)
        w.heal(rid)
        check(len(_runs_of([rid])) == 1, "more than one flow run for the request")
        check(len(w.events(rid, "ticket.commented")) == 1, "the intake note was recorded more than once")
        check_end_state(w)


def _systems(w: World) -> list[dict[str, Any]]:
    import yaml

    loaded: dict[str, list[dict[str, Any]]] = yaml.safe_load(w.stack.systems_file.read_text(encoding="utf-8"))
    return loaded["systems"]


# --- the list --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    run: Callable[[Path, str], None]
    ci: bool = True  # fits CI's time and disturbs no shared service


SCENARIOS = (
    Scenario(1, "vendor answers 429 with Retry-After", rate_limited),
    Scenario(2, "vendor answers 5xx, then recovers", server_errors),
    Scenario(3, "vendor hangs (timeouts)", vendor_hangs),
    Scenario(4, "vendor returns a malformed body", malformed_body),
    Scenario(5, "token expires mid-request", token_expires),
    Scenario(6, "SIGKILL during an access request", killed_access),
    Scenario(7, "SIGKILL during an erasure, between systems", killed_erasure),
    Scenario(8, "PostgreSQL (the ledger) restarts mid-flow", postgres_restarts, ci=False),
    Scenario(9, "SMTP down when mail is due, then back", smtp_down),
    Scenario(10, "Prefect server restarts with runs in flight", prefect_restarts, ci=False),
    Scenario(11, "a human approval is never given", approval_never_given),
    Scenario(12, "the same ticket webhook three times", webhook_three_times),
)
CI_SCENARIOS = tuple(s for s in SCENARIOS if s.ci)


@contextmanager
def prefect_api() -> Iterator[None]:
    """A Prefect test server for a script (pytest has ``prefect_harness`` in conftest)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield

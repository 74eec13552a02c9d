"""The access pipeline at scale: a burst of requests through a Prefect server and a process worker.

    .venv/bin/python benchmarks/bench_pipeline_scale.py [--requests 30] [--latency-ms 100]
        [--worker warm|process] [--worker-limit 4] [--worker-poll-s 1] [--pg-url URL]
        [--scan-rows 100000] [--no-floor] [--logs DIR]

Everything runs on this machine, as in production (README "Production"): ``prefect server
start`` on a fresh PostgreSQL database, the ledger on another one (both dropped afterwards),
the ``access/dsar`` deployment of ``prefect.yaml`` on a process work pool, one ``dsar worker``
(each flow run forked from a warm zygote; ``--worker process``: Prefect's ``prefect worker start``).
The vendor emulators answer every request after ``--latency-ms``, as a vendor's round
trip does; each of ``--requests`` fictional people is seeded into every emulated system (a
customer with orders, invoices, tickets, notes), registered in the ledger and submitted by
``dsar.dispatch`` as a deployment run, all at once.

Printed, from the same run:
* ``pipeline_requests_per_minute``: completed requests over the wall clock from the first
  submit to the last completion; a request counts only if COMPLETED in the ledger and its flow
  run Completed in Prefect; any other is reported as lost;
* ``pipeline_latency_over_critical_path``: per request, the flow run's duration as Prefect
  records it (start to end of the Running run: the machine's time, not the queue's) over its
  critical path, the slowest system's chain of sequential vendor calls times the latency;
  median, with the p95;
* the baseline: each system's export called directly, without Prefect, for one more seeded
  person, its calls counted at the emulator (they give the critical path; the burst's own
  average per request is printed beside them) and the slowest one's wall time;
* Prefect's floor: the same burst, through the same server and worker, of no-op flow runs with
  as many task runs as a request's (``benchmarks/floor_flow.py``): what orchestration alone costs;
* ``deadline_scan_seconds_100k``: ``benchmarks/bench_deadline_scan.py``'s scan on PostgreSQL.

LINK Mobility (a ``manual`` system: an operator answers in the Prefect UI) is left out of the
benchmark's systems file: an operator's answer is not machine time.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import sqlalchemy as sa
import yaml

from benchmarks.bench_deadline_scan import label
from benchmarks.bench_deadline_scan import run as run_deadline_scan
from emulators import internal_db, sms_log
from emulators.internal_db import Person
from emulators.stack import EmulatorStack, emulator_stack
from emulators.twentyfour_state import person_customer

if TYPE_CHECKING:
    from dsar.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PREFECT_DB, LEDGER_DB = "dsar_bench_prefect", "dsar_bench_ledger"
POOL = "dsar-pool"  # as prefect.yaml names it
# prefect deploy selects by entrypoint function and name; the flow itself is named "access".
DEPLOY_SELECTOR = "access-request/dsar"
MANUAL_LEFT_OUT = "link-mobility"
HTTP_SYSTEMS = ("hubspot-crm", "zendesk-support", "poweroffice-go", "tripletex", "twentyfour")
STARTUP_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Result:
    """What one run measured; durations in seconds."""

    requests: int
    latency_ms: float
    completed: int
    lost: int
    wall_s: float
    per_minute: float
    slowest_system: str
    calls_per_request: dict[str, float]  # vendor calls per request during the burst, by system
    critical_path_s: float
    direct_s: float  # the slowest system's export called directly (the baseline)
    direct_calls: dict[str, int]  # vendor calls of each system's export, called directly
    run_seconds: list[float]  # each flow run's Running duration
    ratio_median: float
    ratio_p95: float
    worker_cpu_s: float  # CPU seconds of the worker and its flow-run processes, per request
    poller_cpu_s: float  # of which the worker process's own (polling, submitting), per request
    server_cpu_s: float  # CPU seconds of the Prefect server, per request
    scan_seconds: float | None
    floor: Floor | None  # the same burst of no-op flow runs of the same shape


@dataclass(frozen=True)
class Floor:
    """Prefect's own cost: a burst of flow runs shaped like the requests', whose tasks do nothing."""

    tasks_per_run: float  # task runs of a request's flow run (the floor's runs have as many)
    per_minute: float
    run_seconds_median: float
    worker_cpu_s: float
    server_cpu_s: float
    lost: int


# ---- the people -------------------------------------------------------------------------------------


def bench_people(count: int) -> list[Person]:
    """``count`` fictional people, distinct in e-mail, phone and name (no real person)."""
    return [
        Person(
            email=f"benk.person{n:04d}@example.no",
            phone=f"+479{n:07d}",
            name=f"Benk Person{n:04d}",
            street_address=f"Testveien {n}",
            postal_code="0150",
            city="Oslo",
        )
        for n in range(1, count + 1)
    ]


def seed_people(stack: EmulatorStack, people: Sequence[Person]) -> None:
    """Each person in every emulated system, in the shape of the demo's other people, a bit richer."""
    hubspot, zendesk = stack.hubspot, stack.states["zendesk-support"]
    poweroffice, tripletex = stack.states["poweroffice-go"], stack.states["tripletex"]
    twentyfour = stack.states["twentyfour"]
    for n, p in enumerate(people, start=1):
        first, _, last = p.name.partition(" ")
        hubspot.add_contact(
            {"email": p.email, "firstname": first, "lastname": last, "phone": p.phone, "city": p.city},
            notes=[{"hs_note_body": "Ringte om faktura.", "hs_timestamp": "2025-04-02T10:15:00Z"}],
            deals=[{"dealname": f"Fjordlys Pluss - {last}", "amount": "5988", "dealstage": "closedwon"}],
        )
        user = zendesk.add_user(p.name, p.email, p.phone)
        zendesk.add_ticket(
            user, "Faktura stemmer ikke", [(user, "Fakturaen er feil."), (zendesk.agent_id, "Ok.")]
        )
        zendesk.add_ticket(user, "Får ikke logget inn", [(user, "Lenken virker ikke.")], status="solved")
        customer = poweroffice.add_customer(
            {"Name": p.name, "FirstName": first, "LastName": last, "IsPerson": True}
            | {"EmailAddress": p.email, "PhoneNumber": p.phone.removeprefix("+47")}
        )
        poweroffice.add_invoice(customer, {"TotalAmount": 499.0, "Balance": 0.0, "VoucherDate": "2025-03-01"})
        sale = tripletex.add_customer(p, number=5000 + n)
        tripletex.add_sale(sale, "2025-03-14", 624.5, "Fjordlys Regnskap Basis")
        order = twentyfour.add_customer(person_customer(p, email=p.email, phone=p.phone))
        twentyfour.add_order(order, "Invoice", invoice={"number": 30000 + n, "date": "2025-04-01"})
        internal_db.seed_person(stack.app_db, email=p.email, phone=p.phone, name=p.name, orders_placed=1)
    with stack.states["sms-log"].begin() as conn:
        conn.execute(sms_log.sms_log.insert(), [_sms(p, n) for n, p in enumerate(people)])


def _sms(person: Person, n: int) -> dict[str, Any]:
    return {
        "sent_at": datetime(2025, 4, 1, 8, 0),
        "recipient_phone": person.phone,
        "sender_id": "Fjordlys",
        "message_text": "Din engangskode til Fjordlys er 483920.",
        "provider": "LINK Mobility",
        "provider_message_id": f"bench-{n}",
        "status": "delivered",
    }


# ---- the emulators ----------------------------------------------------------------------------------


@contextmanager
def emulators(folder: Path, people: Sequence[Person], latency_ms: float) -> Iterator[EmulatorStack]:
    """The emulator stack without the manual system, seeded, every vendor answering after ``latency_ms``."""
    example = yaml.safe_load((ROOT / "config" / "systems.example.yaml").read_text(encoding="utf-8"))
    names = [entry["name"] for entry in example["systems"] if entry["name"] != MANUAL_LEFT_OUT]
    with emulator_stack(folder, only=names) as stack:
        # 24SevenOffice has no search: every customer page is read. The demo pages by 5 to exercise
        # paging with four people; the API (and the integration's default) pages by 100.
        stack.states["twentyfour"].page_size = 100
        systems = yaml.safe_load(stack.systems_file.read_text(encoding="utf-8"))
        for entry in systems["systems"]:
            if entry["name"] == "twentyfour":
                entry["page_size"] = 100
        stack.systems_file.write_text(yaml.safe_dump(systems, sort_keys=False, allow_unicode=True))
        seed_people(stack, people)
        for name in HTTP_SYSTEMS:
            stack.states[name].faults.latency_ms = latency_ms
        yield stack


def vendor_calls(stack: EmulatorStack) -> dict[str, int]:
    """Vendor requests each emulator has answered so far."""
    return {
        name: stack.hubspot.request_count if name == "hubspot-crm" else stack.states[name].faults.requests
        for name in HTTP_SYSTEMS
    }


# ---- PostgreSQL and processes -----------------------------------------------------------------------


@contextmanager
def scratch_databases(admin_url: str, *names: str) -> Iterator[dict[str, str]]:
    """Fresh databases (dropped first if a failed run left them); their psycopg URLs; dropped after."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    try:
        drop()
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        base = sa.make_url(admin_url)
        yield {name: base.set(database=name).render_as_string(hide_password=False) for name in names}
    finally:
        drop()
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def process(command: list[str], env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session (its children included), ended when the block ends."""
    with log.open("wb") as out:
        child = subprocess.Popen(  # noqa: S603 - our own venv's prefect, our arguments
            command,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    try:
        yield child
    finally:
        _stop(child)


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the child's own process group (the worker's flow runs too), SIGKILL if it lingers."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    except ProcessLookupError:
        pass


def _processes() -> dict[int, list[str]]:
    """Every process's /proc stat fields after the command name, by pid."""
    found: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            found[int(stat.parent.name)] = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
    return found


def descendants(root: int) -> list[int]:
    """The processes below ``root`` (the worker's flow runs, the server's uvicorn)."""
    children: dict[int, list[int]] = {}
    for pid, fields in _processes().items():
        children.setdefault(int(fields[1]), []).append(pid)  # ppid
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def cpu_seconds(root: int) -> float:
    """CPU time of a process and everything below it, from /proc.

    Live processes' own time plus the time of the children each has waited for (flow runs that
    ended). Load-independent: other work on the machine stretches wall times, not these.
    """
    processes, tree = _processes(), {root, *descendants(root)}
    ticks = sum(sum(int(v) for v in processes[pid][11:15]) for pid in tree if pid in processes)
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(pid: int) -> float:
    """CPU time of one process alone (not of the children it waited for)."""
    fields = _processes().get(pid)
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK") if fields else 0.0


def settle(root: int, timeout_s: float = 30) -> None:
    """Wait until ``root``'s children ended (flow runs exit after their final state), so their
    CPU time is counted."""
    deadline = time.monotonic() + timeout_s
    while descendants(root) and time.monotonic() < deadline:
        time.sleep(0.2)


def prefect(env: Mapping[str, str], *args: str) -> None:
    """One ``prefect`` CLI command, which must succeed."""
    done = subprocess.run(  # noqa: S603 - our own venv's prefect, our arguments
        [str(BIN / "prefect"), *args], env=dict(env), cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy after {STARTUP_TIMEOUT_S:.0f} s")


# ---- the run ----------------------------------------------------------------------------------------


def run(
    requests: int,
    latency_ms: float,
    *,
    worker_limit: int = 4,
    worker_kind: str = "warm",
    with_floor: bool = True,
    worker_poll_s: float = 1.0,
    pg_url: str = PG_URL,
    scan_rows: int | None = 100_000,
    timeout_s: float | None = None,
    logs: Path | None = None,
) -> Result:
    """Set everything up, submit the burst, wait for it, measure, tear everything down."""
    scan_s = run_deadline_scan(pg_url, scan_rows).scan_seconds if scan_rows else None  # on a quiet machine
    # Two more people: the warm-up request's, and the direct baseline's (never submitted).
    people = bench_people(requests + 2)
    warm_up, baseline = people[-2], people[-1]
    with ExitStack() as exits:
        folder = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-")))
        logs = logs or folder
        logs.mkdir(parents=True, exist_ok=True)
        urls = exits.enter_context(scratch_databases(pg_url, PREFECT_DB, LEDGER_DB))
        stack = exits.enter_context(emulators(folder / "systems", people, latency_ms))
        env = _environment(folder, stack.systems_file, urls[LEDGER_DB])
        direct, direct_calls = direct_exports(stack, env, baseline)
        port = free_port()
        api_url = env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        server_env = env | {"PREFECT_API_DATABASE_CONNECTION_URL": _asyncpg(urls[PREFECT_DB])}
        server_log = logs / "server.log"
        server = exits.enter_context(
            process(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                server_env,
                server_log,
            )
        )
        wait_healthy(api_url, server, server_log)
        prefect(env, "work-pool", "create", POOL, "--type", "process")
        prefect(env, "--no-prompt", "deploy", "--name", DEPLOY_SELECTOR)
        worker_env = env | {"PREFECT_WORKER_QUERY_SECONDS": f"{worker_poll_s:g}"}
        worker = exits.enter_context(
            process(worker_command(worker_kind, worker_limit), worker_env, logs / "worker.log")
        )
        # One request through first, as on a server that has seen requests before: it creates the
        # vendors' concurrency limits (dsar.limits), which concurrent first runs race to create.
        burst(api_url, register(env, [warm_up], first=requests + 1), STARTUP_TIMEOUT_S)
        settle(worker.pid)
        ids = register(env, people[:requests])
        before, cpu_before = vendor_calls(stack), (cpu_seconds(worker.pid), cpu_seconds(server.pid))
        poller_before = own_cpu_seconds(worker.pid)
        started, runs = burst(api_url, ids, timeout_s or 120 + 15.0 * requests)
        settle(worker.pid)
        after, cpu_after = vendor_calls(stack), (cpu_seconds(worker.pid), cpu_seconds(server.pid))
        poller_after = own_cpu_seconds(worker.pid)
        completed = completed_in_ledger(env, ids)
        floor = (
            measure_floor(api_url, runs, len(ids), worker.pid, server.pid, timeout_s or 120 + 15.0 * requests)
            if with_floor
            else None
        )
    calls = {name: (after[name] - before[name]) / requests for name in HTTP_SYSTEMS}
    slowest = max(direct_calls, key=lambda name: direct_calls[name])
    critical = direct_calls[slowest] * latency_ms / 1000
    ok, durations, wall = completed_runs(runs, started)
    ratios = sorted(d / critical for d in durations)
    done = min(len(ok), completed)
    return Result(
        requests=requests,
        latency_ms=latency_ms,
        completed=done,
        lost=requests - done,
        wall_s=wall,
        per_minute=done / wall * 60 if wall > 0 else 0.0,
        slowest_system=slowest,
        calls_per_request=calls,
        critical_path_s=critical,
        direct_s=direct[slowest],
        direct_calls=direct_calls,
        run_seconds=durations,
        ratio_median=statistics.median(ratios) if ratios else float("nan"),
        ratio_p95=_percentile(ratios, 0.95),
        worker_cpu_s=(cpu_after[0] - cpu_before[0]) / requests,
        poller_cpu_s=(poller_after - poller_before) / requests,
        server_cpu_s=(cpu_after[1] - cpu_before[1]) / requests,
        scan_seconds=scan_s,
        floor=floor,
    )


def worker_command(kind: str, limit: int) -> list[str]:
    """``dsar worker`` (flow runs forked from a warm zygote) or Prefect's stock process worker."""
    if kind == "warm":
        return [str(BIN / "dsar"), "worker", "--pool", POOL, "--limit", str(limit)]
    return [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", str(limit)]


def _environment(folder: Path, systems_file: Path, ledger_url: str) -> dict[str, str]:
    """The environment of the server, the worker and its flow runs: nothing inherited from ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DSAR_"))}
    home = folder / "prefect-home"
    home.mkdir()
    return env | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "DSAR_HOME": str(ROOT),  # prefect.yaml's pull step: the flow runs from this checkout
        "DSAR_LEDGER_URL": ledger_url,
        "DSAR_SYSTEMS_FILE": str(systems_file),
        "DSAR_VAR_DIR": str(folder / "var"),
        "DSAR_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DSAR_HASH_KEY": secrets.token_urlsafe(32),
    }


def _asyncpg(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _settings(env: Mapping[str, str]) -> Settings:
    from pydantic import SecretStr

    from dsar.settings import Settings

    return Settings(
        ledger_url=env["DSAR_LEDGER_URL"],
        systems_file=Path(env["DSAR_SYSTEMS_FILE"]),
        var_dir=Path(env["DSAR_VAR_DIR"]),
        encryption_key=SecretStr(env["DSAR_ENCRYPTION_KEY"]),
        hash_key=SecretStr(env["DSAR_HASH_KEY"]),
    )


def direct_exports(
    stack: EmulatorStack, env: Mapping[str, str], person: Person
) -> tuple[dict[str, float], dict[str, int]]:
    """The baseline: each vendor system's export for one person, called directly, without Prefect.

    Returns the seconds each took and the vendor calls each made (one after another: a chain).
    """
    from dsar.runtime import Runtime
    from integrations.base import Subject

    runtime = Runtime.from_settings(_settings(env))
    subject = Subject(email=person.email, phone=person.phone, name=person.name)
    timings: dict[str, float] = {}
    calls: dict[str, int] = {}
    try:
        for name in HTTP_SYSTEMS:
            client = runtime.system(name)
            try:
                before, started = vendor_calls(stack)[name], time.perf_counter()
                client.export(subject)
                timings[name] = time.perf_counter() - started
                calls[name] = vendor_calls(stack)[name] - before
            finally:
                client.close()
    finally:
        runtime.close()
    return timings, calls


def register(env: Mapping[str, str], people: Sequence[Person], *, first: int = 1) -> list[str]:
    """Each person's access request, registered as the intake does, the requester's identity confirmed.

    Confirming identity waits for a person (a BankID login, an e-mail code, an operator), which
    is no machine time: an operator's approval is recorded before the burst, so every flow
    passes that gate as one whose requester was already confirmed does.
    """
    from dsar import intake
    from dsar.identity import service
    from dsar.ledger import Ledger

    ledger = Ledger(_settings(env))
    ids: list[str] = []
    try:
        for n, p in enumerate(people, start=first):
            request_id = intake.register(
                ledger,
                request_type="access",
                subject=intake.build_subject(email=p.email, phone=p.phone, name=p.name),
                ticket_ref=f"BENCH-{n}",
            ).request_id
            reason = "benchmark: fictional requester, confirmed before the burst"
            service.record_review(ledger, request_id, decision="approve", operator="Benchmark", reason=reason)
            ids.append(request_id)
        return ids
    finally:
        ledger.close()


def completed_in_ledger(env: Mapping[str, str], ids: Sequence[str]) -> int:
    from dsar.ledger import Ledger
    from dsar.ledger.models import Request, RequestStatus

    ledger = Ledger(_settings(env))
    try:
        with ledger.session() as session:
            query = sa.select(sa.func.count()).where(
                Request.id.in_(ids), Request.status == RequestStatus.COMPLETED
            )
            return int(session.scalar(query) or 0)
    finally:
        ledger.close()


def burst(api_url: str, ids: Sequence[str], timeout_s: float) -> tuple[datetime, list[dict[str, Any]]]:
    """Submit every request as a deployment run at once, as ``dsar submit`` does; wait until all end
    (or ``timeout_s`` passed)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from dsar import dispatch

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        started = datetime.now(UTC)
        for request_id in ids:
            dispatch.start(request_id, "access", "deployment")
        wanted = set(ids)
        return started, wait_for_runs(api_url, lambda run: run["request_id"] in wanted, len(ids), timeout_s)


def wait_for_runs(
    api_url: str, mine: Callable[[dict[str, Any]], bool], count: int, timeout_s: float
) -> list[dict[str, Any]]:
    """The flow runs ``mine`` picks, once ``count`` of them have ended (or ``timeout_s`` passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [run for run in flow_runs(api_url) if mine(run)]
        if len(runs) >= count and all(run["final"] for run in runs):
            return runs
        if time.monotonic() > deadline:  # reported: whatever has not completed counts as lost
            print(f"timed out after {timeout_s:.0f} s", file=sys.stderr)
            return runs
        time.sleep(1)


def completed_runs(
    runs: Sequence[dict[str, Any]], started: datetime
) -> tuple[list[dict[str, Any]], list[float], float]:
    """The completed runs, each one's Running seconds, and the wall seconds from ``started`` to the
    last one's end."""
    ok = [r for r in runs if r["state"] == "COMPLETED" and r["start"] and r["end"]]
    durations = [(r["end"] - r["start"]).total_seconds() for r in ok]
    return ok, durations, (max((r["end"] for r in ok), default=started) - started).total_seconds()


def measure_floor(
    api_url: str, runs: Sequence[dict[str, Any]], count: int, worker: int, server: int, timeout_s: float
) -> Floor:
    """Deploy ``benchmarks/floor_flow.py`` to the same pool, burst ``count`` runs of the requests'
    shape (their task runs: the systems at once, the rest one after another), measure alike."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from benchmarks.floor_flow import floor

    with httpx.Client(base_url=api_url, timeout=30) as client:
        ids = [str(run["id"]) for run in runs]
        tasks = client.post("/task_runs/count", json={"flow_runs": {"id": {"any_": ids}}}).json()
    per_run = tasks / max(1, len(runs))
    parallel = len(HTTP_SYSTEMS) + 2  # the vendor APIs and the two SQL databases
    sequential = max(0, round(per_run) - parallel)
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        with redirect_stdout(io.StringIO()):  # deploy() prints its table: not among the figures
            deployment = floor.from_source(str(ROOT), "benchmarks/floor_flow.py:floor").deploy(  # type: ignore[attr-defined]
                name="bench", work_pool_name=POOL, print_next_steps=False
            )
        cpu_before = cpu_seconds(worker), cpu_seconds(server)
        started = datetime.now(UTC)
        with get_client(sync_client=True) as prefect_client:
            created = [
                prefect_client.create_flow_run_from_deployment(
                    deployment,
                    parameters={"request_id": f"floor-{n}", "sequential": sequential, "parallel": parallel},
                ).id
                for n in range(count)
            ]
        wanted = {str(run_id) for run_id in created}
        floor_runs = wait_for_runs(api_url, lambda run: run["id"] in wanted, count, timeout_s)
        settle(worker)
        cpu_after = cpu_seconds(worker), cpu_seconds(server)
    ok, durations, wall = completed_runs(floor_runs, started)
    return Floor(
        tasks_per_run=per_run,
        per_minute=len(ok) / wall * 60 if wall > 0 else 0.0,
        run_seconds_median=statistics.median(durations) if durations else float("nan"),
        worker_cpu_s=(cpu_after[0] - cpu_before[0]) / count,
        server_cpu_s=(cpu_after[1] - cpu_before[1]) / count,
        lost=count - len(ok),
    )


def flow_runs(api_url: str) -> list[dict[str, Any]]:
    """Every flow run on the (benchmark's own) server: request, state, start and end as Prefect has them."""
    runs: list[dict[str, Any]] = []
    with httpx.Client(base_url=api_url, timeout=30) as client:
        while True:
            page = client.post("/flow_runs/filter", json={"offset": len(runs), "limit": 200}).json()
            runs += [
                {
                    "id": run["id"],
                    "request_id": run["parameters"].get("request_id"),
                    "state": run["state_type"],
                    "final": run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"),
                    "start": _moment(run["start_time"]),
                    "end": _moment(run["end_time"]),
                    "created": _moment(run["created"]),
                }
                for run in page
            ]
            if len(page) < 200:
                return runs


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> Result:
    """Parse the command line, run the benchmark, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=30, help="requests in the burst (default 30)")
    parser.add_argument("--latency-ms", type=float, default=100, help="every vendor call's latency (100)")
    # 2 cores: a flow run is mostly CPU (imports, PDF); 4 slots let vendor waits overlap.
    parser.add_argument("--worker-limit", type=int, default=4, help="the process worker's --limit (4)")
    parser.add_argument(
        "--worker",
        choices=("warm", "process"),
        default="warm",
        help="dsar worker (runs forked from a warm zygote, default) or prefect worker start",
    )
    parser.add_argument("--worker-poll-s", type=float, default=1, help="PREFECT_WORKER_QUERY_SECONDS (1)")
    parser.add_argument("--pg-url", default=PG_URL, help=f"an admin URL of the PostgreSQL ({PG_URL})")
    parser.add_argument(
        "--timeout-s", type=float, help="give up waiting for the burst (120 + 15 s a request)"
    )
    parser.add_argument("--logs", type=Path, help="keep the server's and worker's logs in this folder")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the burst of no-op flow runs (Prefect's own cost)"
    )
    parser.add_argument("--scan-rows", type=int, default=100_000, help="deadline scan size; 0 skips it")
    args = parser.parse_args(argv)
    result = run(
        args.requests,
        args.latency_ms,
        worker_limit=args.worker_limit,
        worker_kind=args.worker,
        with_floor=not args.no_floor,
        worker_poll_s=args.worker_poll_s,
        pg_url=args.pg_url,
        scan_rows=args.scan_rows or None,
        logs=args.logs,
        timeout_s=args.timeout_s,
    )
    calls = ", ".join(f"{name} {result.direct_calls[name]}" for name in HTTP_SYSTEMS)
    burst_calls = ", ".join(f"{name} {n:.1f}" for name, n in result.calls_per_request.items())
    print(f"requests: {result.requests}; vendor latency: {result.latency_ms:g} ms per call")
    print(
        f"systems: {len(HTTP_SYSTEMS)} vendor APIs and 2 SQL databases; {MANUAL_LEFT_OUT} (manual) left out"
    )
    kind = "dsar worker (warm zygote)" if args.worker == "warm" else "prefect worker start"
    poll = f"polling every {args.worker_poll_s:g} s"
    print(f"worker: {kind} on a process pool, --limit {args.worker_limit}, {poll}")
    print(f"vendor calls per export, called directly: {calls}")
    print(f"vendor calls per request in the burst: {burst_calls}")
    print(f"critical path: {result.slowest_system}, {result.critical_path_s:.2f} s")
    print(f"baseline, {result.slowest_system} export called directly: {result.direct_s:.2f} s")
    runs = sorted(result.run_seconds)
    if runs:
        print(f"flow run (Running) seconds: median {statistics.median(runs):.2f}, max {runs[-1]:.2f}")
    cpu = (
        f"worker and flow runs {result.worker_cpu_s:.1f} s (the worker process itself"
        f" {result.poller_cpu_s:.1f} s), server {result.server_cpu_s:.1f} s"
    )
    print(f"CPU per request: {cpu}")
    print(f"completed: {result.completed}/{result.requests} in {result.wall_s:.1f} s; lost: {result.lost}")
    print(f"pipeline_latency_over_critical_path: {result.ratio_median:.2f} (p95 {result.ratio_p95:.2f})")
    print(f"pipeline_requests_per_minute: {result.per_minute:.1f}")
    if result.floor is not None:
        f = result.floor
        print(
            f"prefect floor, the same burst of no-op flow runs ({f.tasks_per_run:.0f} task runs each):"
            f" {f.per_minute:.1f} per minute, run median {f.run_seconds_median:.2f} s, lost {f.lost};"
            f" CPU per run: worker and flow runs {f.worker_cpu_s:.1f} s, server {f.server_cpu_s:.1f} s"
        )
    if result.scan_seconds is not None:
        print(f"deadline_scan_seconds_{label(args.scan_rows)}: {result.scan_seconds:.3f}")
    return result


if __name__ == "__main__":
    main()

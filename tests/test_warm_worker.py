"""``dsar worker``: flow runs of a process work pool forked from a warm zygote.

A real ``prefect server start``, a real ``dsar worker`` process and a deployment of
``tests/warm_probe.py``; every run reports the process it ran in.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

from dsar.warm.protocol import receive, send
from tests.prefect_server import BIN, PrefectServer, prefect_env, running_prefect_server, stop

ROOT = Path(__file__).resolve().parents[1]
POOL = "warm-test"
RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    folder = tmp_path_factory.mktemp("warm-server")
    with running_prefect_server(folder / "home", folder / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def deployment(server: PrefectServer) -> uuid.UUID:
    from tests.warm_probe import probe

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        with get_client(sync_client=True) as client:
            from prefect.client.schemas.actions import WorkPoolCreate

            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        source = probe.from_source(str(ROOT), "tests/warm_probe.py:probe")
        deployment_id: uuid.UUID = source.deploy(  # type: ignore[attr-defined]
            name="warm",
            work_pool_name=POOL,
            job_variables={"env": {"WARM_PROBE": "from-the-job"}},
            print_next_steps=False,
        )
    return deployment_id


@pytest.fixture(scope="module")
def worker(
    server: PrefectServer, deployment: uuid.UUID, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """``dsar worker`` on the pool; its zygote's pid read from its log."""
    folder = tmp_path_factory.mktemp("warm-worker")
    log = folder / "worker.log"
    env = prefect_env(server.home, PREFECT_API_URL=server.api_url, PREFECT_WORKER_QUERY_SECONDS="1")
    env |= {"DSAR_VAR_DIR": str(folder / "var"), "DSAR_WARM_SOCKET": str(folder / "run" / "warm.sock")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dsar"), "worker", "--pool", POOL, "--limit", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    try:
        zygote = _zygote_pid(log, process)
        yield {
            "process": process,
            "zygote": zygote,
            "log": log,
            "socket": env["DSAR_WARM_SOCKET"],
            "env": env,
        }
    finally:
        stop(process)


def _zygote_pid(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = re.search(r"zygote (\d+) listening", log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            pytest.fail(f"dsar worker exited:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    pytest.fail("the zygote did not start")


def run_probe(server: PrefectServer, deployment: uuid.UUID, out: Path, **parameters: Any) -> uuid.UUID:
    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):
        run = client.create_flow_run_from_deployment(deployment, parameters={"out": str(out), **parameters})
        return run.id


def final_state(server: PrefectServer, run_id: uuid.UUID) -> StateType:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return state.type
            time.sleep(0.5)
    pytest.fail(f"flow run {run_id} did not end within {RUN_TIMEOUT_S:.0f} s")


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def test_runs_fork_from_the_zygote_with_the_jobs_environment(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path
) -> None:
    outs = [tmp_path / "one.json", tmp_path / "two.json"]
    runs = [run_probe(server, deployment, out) for out in outs]

    assert [final_state(server, run) for run in runs] == [StateType.COMPLETED] * 2
    first, second = (report(out) for out in outs)
    for seen, run in ((first, runs[0]), (second, runs[1])):
        assert seen["ppid"] == worker["zygote"], "forked from the warm zygote, not started cold"
        assert seen["probe_env"] == "from-the-job"  # the work pool's job variables reach the run
        assert seen["flow_run_id"] == str(run)
        assert seen["sid"] == seen["pid"], "a session of its own, as the stock worker's runs"
    assert first["pid"] != second["pid"]
    assert first["random"] != second["random"], "each fork reseeds the random module"
    assert "starting the flow run cold" not in worker["log"].read_text(errors="replace")


def test_a_failing_run_is_failed_not_crashed(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path
) -> None:
    run = run_probe(server, deployment, tmp_path / "fail.json", outcome="fail")

    assert final_state(server, run) == StateType.FAILED
    assert report(tmp_path / "fail.json")["ppid"] == worker["zygote"]


def test_a_cancelled_run_ends_its_forked_process(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "sleep.json"
    run = run_probe(server, deployment, out, sleep_s=300)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    pid = report(out)["pid"]

    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):
        client.set_flow_run_state(run, Cancelling())

    assert final_state(server, run) == StateType.CANCELLED
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the forked run was ended, not left behind"


def test_without_a_zygote_the_launcher_starts_the_run_cold(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cold.json"
    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):
        run = client.create_flow_run_from_deployment(
            deployment, parameters={"out": str(out)}, work_queue_name="not-polled"
        )
    env = worker["env"] | {
        "DSAR_WARM_SOCKET": str(tmp_path / "nobody.sock"),
        "PREFECT__FLOW_RUN_ID": str(run.id),
    }
    done = subprocess.run(
        [sys.executable, "-m", "dsar.warm.launch"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "no warm zygote is listening; starting the flow run cold" in done.stderr
    assert report(out)["ppid"] != worker["zygote"]
    assert final_state(server, run.id) == StateType.COMPLETED


@pytest.mark.parametrize(
    "message",
    [b"", b"\x00\x00\x00\x05nope!", b"\xff\xff\xff\xff", b"\x00\x00\x00\x02[]"],
    ids=["hangup", "not-json", "huge", "not-object"],
)
def test_garbage_on_the_socket_is_refused_and_the_zygote_keeps_serving(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path, message: bytes
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(worker["socket"])
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(15)
        assert sock.recv(100) == b"", "no run started for it"

    run = run_probe(server, deployment, tmp_path / "after.json")
    assert final_state(server, run) == StateType.COMPLETED
    assert report(tmp_path / "after.json")["ppid"] == worker["zygote"]


def test_a_request_without_its_streams_is_refused(worker: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(worker["socket"])
        send(sock, {"env": {}, "cwd": str(tmp_path), "argv": []})
        sock.settimeout(15)
        answer, _ = receive(sock)

    assert answer == {"refused": "standard streams missing"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _newest_zygote(worker: dict[str, Any], other_than: int) -> int:
    """The pid of a zygote listening since ``other_than`` retired or died (read from the log)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pids = [int(pid) for pid in re.findall(r"zygote (\d+) listening", worker["log"].read_text())]
        if pids and pids[-1] != other_than and _alive(pids[-1]):
            return pids[-1]
        time.sleep(0.2)
    pytest.fail(f"no zygote took over from {other_than}:\n{worker['log'].read_text(errors='replace')}")


def test_a_killed_zygote_is_replaced_and_runs_fork_again(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path
) -> None:
    old = worker["zygote"]
    before = run_probe(server, deployment, tmp_path / "before.json")  # the worker is serving
    assert final_state(server, before) == StateType.COMPLETED
    assert report(tmp_path / "before.json")["ppid"] == old
    os.kill(old, 9)
    worker["zygote"] = _newest_zygote(worker, other_than=old)

    run = run_probe(server, deployment, tmp_path / "after.json")
    assert final_state(server, run) == StateType.COMPLETED
    assert report(tmp_path / "after.json")["ppid"] == worker["zygote"]


def test_changed_sources_retire_the_zygote_after_its_runs_and_a_fresh_one_takes_over(
    server: PrefectServer, deployment: uuid.UUID, worker: dict[str, Any], tmp_path: Path
) -> None:
    old = worker["zygote"]
    # Long enough to outlast a successor's start (a pause, then its imports) on a loaded machine.
    in_flight = run_probe(server, deployment, tmp_path / "in-flight.json", sleep_s=45)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (tmp_path / "in-flight.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    source = ROOT / "flows" / "__init__.py"
    stat = source.stat()
    try:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # as a deploy does
        fresh = _newest_zygote(worker, other_than=old)
        assert _alive(old), "the retired zygote waits for its run in flight"

        run = run_probe(server, deployment, tmp_path / "fresh.json")
        assert final_state(server, run) == StateType.COMPLETED
        assert report(tmp_path / "fresh.json")["ppid"] == fresh, "forked from the fresh zygote"
        assert final_state(server, in_flight) == StateType.COMPLETED
        assert report(tmp_path / "in-flight.json")["ppid"] == old
        deadline = time.monotonic() + 30
        while _alive(old) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(old), "the retired zygote exits once its runs ended"
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    worker["zygote"] = _newest_zygote(worker, other_than=fresh)  # the restored time is a change too

"""Issue 7: the demo, run by the real CLI against a real `prefect server start`, leaves no
identifier of any demo person in Prefect's database, in PREFECT_HOME, in the server's log
or in what the demo prints."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import phonenumbers
import pytest

from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE, Person

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 120.0
DEMO_TIMEOUT_S = 180.0
DATE_OF_BIRTH = "1985-05-17"  # the emulated accounting system's private customers; no national id is seeded


def identifiers(person: Person) -> set[str]:
    """Every form in which the person's identifiers are held by the emulated systems, lowercased."""
    national = str(phonenumbers.parse(person.phone).national_number)
    spaced = f"{national[:3]} {national[3:5]} {national[5:]}"  # "912 34 567", as typed in PowerOffice
    values = {person.email, person.email.lower(), person.phone, national, spaced}
    values |= {person.name, person.street_address}
    return {value.lower() for value in values}


ALL_IDENTIFIERS = sorted(
    set().union(*(identifiers(p) for p in (DEMO_SUBJECT, *OTHER_PEOPLE))) | {DATE_OF_BIRTH}
)


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path
    log_file: Path
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the process we started, and its own process group (uvicorn, services), politely first."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


def _prefect_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return env | extra


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """A real `prefect server start` on a free port, SQLite in its own PREFECT_HOME, logging at DEBUG."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    log_file = tmp_path / "prefect-server.log"
    port = _free_port()
    env = _prefect_env(
        home,
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="DEBUG",
        PREFECT_LOGGING_LEVEL="DEBUG",
    )
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(api_url, process, log_file)
        yield PrefectServer(api_url=api_url, home=home, log_file=log_file, process=process)
    finally:
        _stop(process)


def _wait_healthy(api_url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"prefect server exited with {process.returncode}:\n{log_file.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {STARTUP_TIMEOUT_S:.0f} s")


def _run_demo(server: PrefectServer, var_dir: Path) -> tuple[int, str, str]:
    env = _prefect_env(server.home, PREFECT_API_URL=server.api_url)
    process = subprocess.Popen(
        [str(BIN / "dsar"), "demo", "--var-dir", str(var_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        _stop(process)
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _hits(places: dict[str, str]) -> list[str]:
    return [
        f"{value!r} in {where}"
        for where, text in places.items()
        for value in ALL_IDENTIFIERS
        if value in text.lower()
    ]


def test_demo_leaves_no_personal_data_in_prefect(prefect_server: PrefectServer, tmp_path: Path) -> None:
    code, out, err = _run_demo(prefect_server, tmp_path / "demo")
    assert code == 0, f"dsar demo failed ({code}):\n{err}"
    documents = [Path(line) for line in out.splitlines() if line.strip()]
    assert len(documents) == 2, out
    assert all(p.suffix == ".pdf" and p.is_file() for p in documents), out
    assert "dsar demo" in err  # the summary table, which holds ids, statuses and counts only

    _stop(prefect_server.process)
    database = prefect_server.home / "prefect.db"
    with closing(sqlite3.connect(database)) as conn:
        dump = "\n".join(conn.iterdump())
        flow_runs = conn.execute("select count(*) from flow_run").fetchone()[0]
    server_log = prefect_server.log_file.read_text(encoding="utf-8", errors="replace")

    places = {
        "Prefect's database (iterdump)": dump,
        "the server's log": server_log,
        "the demo's stdout": out,
        "the demo's stderr": err,
    }
    files = [path for path in sorted(prefect_server.home.rglob("*")) if path.is_file()]
    for path in files:
        places[f"PREFECT_HOME/{path.relative_to(prefect_server.home)}"] = path.read_bytes().decode(
            "utf-8", errors="replace"
        )

    # The search is not vacuous: the runs, their logs and the requests reached the server.
    assert flow_runs >= 2
    assert "access-dsar-" in dump
    assert "erasure-dsar-" in dump
    assert 'insert into "log"' in dump.lower()
    assert "/api/flow_runs" in server_log  # request lines are logged, so a leak in a URL would show
    assert database in files
    assert _hits(places) == []

"""A real `prefect server start` for the tests that need one: SQLite in its own PREFECT_HOME, a
free loopback port, started in its own process group and stopped with it.

The in-process test harness (``prefect_harness`` in conftest) is faster, but only a separate
server proves what a deployment sees: its database, its log, its UI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

__all__ = ["BIN", "PrefectServer", "free_port", "prefect_env", "running_prefect_server", "stop"]

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    home: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Where the UI is served: the API URL without ``/api``."""
        return self.api_url.removesuffix("/api")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
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


def prefect_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its PREFECT_* settings, with ``home`` as PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return env | extra


@contextmanager
def running_prefect_server(home: Path, log_file: Path, **extra_env: str) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port with ``home`` as PREFECT_HOME, healthy, until the block ends."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    api_url = f"http://127.0.0.1:{port}/api"
    # `--port` does not reach the UI's settings: without this its pages would call port 4200.
    env = prefect_env(home, **({"PREFECT_UI_API_URL": api_url} | extra_env))
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_healthy(api_url, process, log_file)
        yield PrefectServer(api_url=api_url, home=home, log_file=log_file, process=process)
    finally:
        stop(process)


def wait_healthy(api_url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
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

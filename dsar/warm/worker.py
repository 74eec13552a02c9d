"""``dsar worker``: Prefect's process worker, with each flow run forked from a warm zygote.

The worker is Prefect's own (polling, heartbeats, cancellation, crash reporting, the pool's job
template); only the command it starts for a run changes, from ``python -m prefect.engine`` to
``python -m dsar.warm.launch``, and only where a deployment did not set a command of its own.
It serves a ``process`` work pool, beside or instead of ``prefect worker start``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import TYPE_CHECKING

from prefect.utilities.processutils import command_to_string
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

from dsar.prefect_tls import share_api_tls_contexts

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

__all__ = ["LAUNCH_COMMAND", "WarmProcessWorker", "Zygotes", "run_worker", "zygote"]

LAUNCH_COMMAND = command_to_string([sys.executable, "-m", "dsar.warm.launch"])
ZYGOTE_START_TIMEOUT_S = 180.0
ZYGOTE_DRAIN_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 1.0  # how soon a retired or dead zygote gets a successor
RENEW_PAUSE_S, RENEW_PAUSE_MAX_S = 5.0, 120.0  # before a successor of one that failed or did not last
LASTED_S = 30.0  # a zygote that ended sooner may be failing: its successor waits a growing pause


class WarmJobConfiguration(ProcessJobConfiguration):
    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: Flow | None = None,
        work_pool: WorkPool | None = None,
        worker_name: str | None = None,
        worker_id: UUID | None = None,
    ) -> None:
        super().prepare_for_flow_run(flow_run, deployment, flow, work_pool, worker_name, worker_id)
        if not self._command_configured:  # a deployment's own command is kept
            self.command = LAUNCH_COMMAND
            self._command_configured = True


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Prefect warns that this class now answers for "process" pools

    class WarmProcessWorker(ProcessWorker):
        type = "process"
        job_configuration = WarmJobConfiguration
        _description = "Process worker whose flow runs are forked from a warm dsar zygote."


@contextmanager
def zygote(socket_path: str) -> Iterator[Zygotes]:
    """A zygote listening on ``socket_path`` (ready when this yields), kept so; all drained after."""
    zygotes = Zygotes(socket_path)
    zygotes.start()
    try:
        yield zygotes
    finally:
        zygotes.stop()


class Zygotes:
    """The zygote a worker's launchers talk to, renewed when it retires or dies.

    A zygote retires when the checkout's sources change (a deploy): it stops listening and
    exits once its runs end. A watcher thread then starts a fresh one on the new sources, as it
    does if a zygote dies; runs that arrive meanwhile start cold, so none waits or is lost. A
    zygote that fails to start (a deploy half-written, an import error) or does not last is
    followed after a growing pause, not in a loop of imports.
    """

    def __init__(self, socket_path: str) -> None:
        self.path = socket_path
        self.current: subprocess.Popen[bytes] | None = None
        self._since = 0.0  # when the current one started listening
        self._all: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="dsar-zygotes", daemon=True)

    def start(self) -> None:
        self.current = self._spawn()  # the first one must start: the worker fails otherwise
        self._watcher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join()
        for child in self._all:
            _drain(child)

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "dsar.warm.zygote", "--socket", self.path]
        child = subprocess.Popen(command)  # noqa: S603 - our own module
        self._all.append(child)
        try:
            _wait_listening(child, self.path)
        except RuntimeError:
            _drain(child)
            raise
        self._since = time.monotonic()
        return child

    def _needs_successor(self) -> bool:
        return self.current is None or self.current.poll() is not None or not os.path.exists(self.path)

    def _watch(self) -> None:
        pause = RENEW_PAUSE_S
        while not self._stopping.wait(WATCH_INTERVAL_S):
            self._all = [child for child in self._all if child.poll() is None or child is self.current]
            if not self._needs_successor():
                continue
            if self.current is None or time.monotonic() - self._since < LASTED_S:
                if self._stopping.wait(pause):
                    return
                pause = min(pause * 2, RENEW_PAUSE_MAX_S)
            else:
                pause = RENEW_PAUSE_S
            try:
                self.current = self._spawn()
            except RuntimeError as failed:
                sys.stderr.write(f"dsar.warm: no fresh zygote ({failed}); runs start cold meanwhile\n")
                self.current = None


def _wait_listening(child: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + ZYGOTE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the warm zygote exited with code {child.returncode} while starting")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                time.sleep(0.1)
                continue
        return
    raise RuntimeError(f"the warm zygote did not listen on {path} within {ZYGOTE_START_TIMEOUT_S:.0f} s")


def _drain(child: subprocess.Popen[bytes]) -> None:
    """Stop taking runs, let those in flight finish; a second signal, then a kill, if they do not."""
    for wait in (ZYGOTE_DRAIN_TIMEOUT_S, 20.0):
        if child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
    child.kill()
    child.wait()


def run_worker(pool: str, *, limit: int | None, name: str | None, socket_path: str) -> None:
    """Start the zygote, then the worker on ``pool`` until interrupted."""
    os.environ["DSAR_WARM_SOCKET"] = socket_path  # the launchers inherit the worker's environment
    share_api_tls_contexts()
    signal.signal(signal.SIGTERM, _interrupt)  # stopped as by Ctrl-C: the zygote is drained
    with zygote(socket_path), suppress(KeyboardInterrupt):
        asyncio.run(WarmProcessWorker(work_pool_name=pool, limit=limit, name=name).start())


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt

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

__all__ = ["LAUNCH_COMMAND", "WarmProcessWorker", "run_worker", "zygote"]

LAUNCH_COMMAND = command_to_string([sys.executable, "-m", "dsar.warm.launch"])
ZYGOTE_START_TIMEOUT_S = 180.0
ZYGOTE_DRAIN_TIMEOUT_S = 60.0


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
def zygote(socket_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """A zygote process listening on ``socket_path`` (ready when this yields); drained after."""
    command = [sys.executable, "-m", "dsar.warm.zygote", "--socket", socket_path]
    child = subprocess.Popen(command)  # noqa: S603 - our own module
    try:
        _wait_listening(child, socket_path)
        yield child
    finally:
        _drain(child)


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

"""The command a warm worker runs for a flow run: ``python -m dsar.warm.launch``.

Asks the zygote to fork the run, then stands in for it: the worker sees this process, its
signals are passed on to the run, and it exits with the run's exit code. Without a zygote
(none started, gone, or its code older than the checkout's) it becomes the stock engine
process instead, so a run is never lost, only started cold. Standard library only: this
process costs milliseconds, not the seconds the engine's imports do.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from types import FrameType
from typing import NoReturn

from dsar.warm.protocol import ProtocolError, default_socket_path, receive, send

__all__ = ["main"]

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def main() -> NoReturn:
    sock = _connect(default_socket_path())
    if sock is None:
        cold_start("no warm zygote is listening")
    try:
        pid = _start(sock)
    except (OSError, ProtocolError) as exc:
        cold_start(f"the warm zygote failed to start the run ({exc})")
    if isinstance(pid, str):
        cold_start(pid)
    _forward_signals(pid)
    code = _wait(sock, pid)
    sys.stdout.flush()
    if code < 0:  # ended by a signal: end the same way, so the worker reports it as such
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def cold_start(reason: str) -> NoReturn:
    """Become ``python -m prefect.engine`` (the stock worker's command) in this process."""
    sys.stderr.write(f"dsar.warm: {reason}; starting the flow run cold\n")
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *sys.argv[1:]])  # noqa: S606


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _start(sock: socket.socket) -> int | str:
    """The forked run's pid, or why the zygote refused."""
    request = {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:]}
    send(sock, request, fds=[0, 1, 2])
    answer, _ = receive(sock)
    if "pid" in answer:
        return int(answer["pid"])
    return f"the warm zygote refused: {answer.get('refused', 'no reason given')}"


def _forward_signals(pid: int) -> None:
    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):  # ended meanwhile: its exit code is coming
            os.kill(pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)


def _wait(sock: socket.socket, pid: int) -> int:
    """The run's exit code (negative: the signal that ended it); 1 if the zygote went away."""
    while True:
        try:
            answer, _ = receive(sock)
        except (OSError, ProtocolError):
            # The zygote died with the run still ours: end the run rather than orphan it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            sys.stderr.write("dsar.warm: lost the warm zygote while the run was going\n")
            return 1
        if "exit" in answer:
            return int(answer["exit"])


if __name__ == "__main__":
    main()

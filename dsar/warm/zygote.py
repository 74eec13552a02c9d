"""The zygote: imports the pipeline once, then forks a process for each flow run it is asked for.

    python -m dsar.warm.zygote [--socket PATH]

It stays single-threaded (forking a process with threads copies locks held by threads that do
not exist in the child) and opens no connection before forking: each run builds its own Prefect
client, database engine and HTTP clients, as a cold engine process would. Only processes of the
same user may connect. When the project's sources change after it started, it never forks
again (the launcher starts such a run cold rather than run old code): it retires, stops listening,
lets its runs finish and exits; ``dsar worker`` then starts a fresh zygote on the new sources.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import os
import random
import runpy
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from dsar.warm.protocol import ProtocolError, default_socket_path, receive, send

__all__ = ["PRELOAD", "Zygote", "main"]

ROOT = Path(__file__).resolve().parents[2]
# What a flow run would import: the engine, every deployed flow, the document renderer.
PRELOAD = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.deployments.steps",
    "flows.access",
    "flows.erasure",
    "flows.rights",
    "flows.portability",
    "flows.deadlines",
    "flows.retention",
    "flows.purge",
    "flows.reconcile",
    "dsar.documents",
    "dsar.signing",
    # the systems' clients, which the registry imports when a system is first built
    "integrations.hubspot",
    "integrations.zendesk",
    "integrations.poweroffice",
    "integrations.tripletex",
    "integrations.twentyfour",
    "integrations.sql",
    "integrations.manual",
    "integrations.ticketing",
    # imported lazily by a run's first query, artifact, holiday lookup or event loop
    "psycopg",
    "pymysql",
    "sqlite3",
    "sqlalchemy.dialects.postgresql.psycopg",
    "sqlalchemy.dialects.mysql.pymysql",
    "sqlalchemy.dialects.sqlite.pysqlite",
    "anyio._backends._asyncio",
    "pypdf.filters",
    "rich._emoji_codes",
    "prefect.utilities.visualization",
    "email.policy",
    "holidays.countries",
)
SOURCES = ("dsar", "flows", "tasks", "integrations", "templates")
SOURCES_CHECK_S = 5.0  # how often an idle zygote looks for changed sources (a few ms each time)
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class Job:
    """What a launcher asked for: the run's environment, working directory, engine arguments and
    standard streams."""

    env: dict[str, str]
    cwd: str
    argv: list[str]
    fds: list[int]

    @classmethod
    def parse(cls, request: dict[str, object], fds: list[int]) -> Job | str:
        """The job, or why it is refused."""
        env, cwd, argv = request.get("env"), request.get("cwd"), request.get("argv", [])
        if len(fds) != 3:
            return "standard streams missing"
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            return "environment missing"
        if not isinstance(cwd, str) or not os.path.isdir(cwd):
            return "working directory missing"
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            return "arguments malformed"
        return cls(env=env, cwd=cwd, argv=argv, fds=fds)


@dataclass
class Run:
    """A forked flow run and the launcher connection that stands for it."""

    pid: int
    conn: socket.socket | None  # None once the launcher went away


@dataclass
class Zygote:
    path: str
    root: Path = ROOT
    runs: dict[int, Run] = field(default_factory=dict)
    _fingerprint: tuple[tuple[str, int], ...] = ()
    _owner: int = 0
    _inode: int = 0  # of the socket it bound: a successor may bind the same path
    retired: bool = False

    def preload(self, modules: Iterable[str] = PRELOAD) -> None:
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        for name in modules:
            importlib.import_module(name)
        warm_caches()
        self._fingerprint = self.sources()
        # What was imported lives as long as every fork: the collector need not look at it again
        # in each run (and by not touching it, leaves the pages shared with the zygote).
        gc.collect()
        gc.freeze()

    def sources(self) -> tuple[tuple[str, int], ...]:
        """Every project source file with its modification time: what the forks would run."""
        found: list[tuple[str, int]] = []
        for folder in SOURCES:
            for path in sorted((self.root / folder).rglob("*")):
                if path.suffix in {".py", ".j2", ".css", ".yaml", ".json"} and path.is_file():
                    found.append((str(path), path.stat().st_mtime_ns))
        return tuple(found)

    def serve(self) -> Job | None:
        """Answer launchers until stopped; returns (in a forked child only) the run to execute.

        A stop (SIGTERM, SIGINT) closes the socket and waits for the runs in flight, as a worker
        shutting down lets its runs finish; a second one ends them. Changed sources retire the
        zygote the same way.
        """
        listener = self._listen()
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, None)
        stop = _StopFlag()
        checked = time.monotonic()
        try:
            while not (stop.requested or self.retired) or self.runs:
                if time.monotonic() - checked > SOURCES_CHECK_S and not self.retired:
                    checked = time.monotonic()
                    self._check_sources()
                if (stop.requested or self.retired) and listener.fileno() >= 0:
                    selector.unregister(listener)
                    listener.close()
                    self._unlink()  # a successor can listen while the runs in flight finish
                if stop.twice:
                    self._end_runs()
                    stop.twice = False
                for key, _ in selector.select(timeout=0.05):
                    if key.fileobj is listener:
                        conn, _ = listener.accept()
                        job = self._start(conn, selector, listener)
                        if job is not None:
                            return job  # the child: leave the loop, run the engine
                    else:
                        self._launcher_gone(selector, key.data)
                self._reap(selector)
            return None
        finally:
            if os.getpid() == self._owner:
                selector.close()
                listener.close()
                self._unlink()

    def _listen(self) -> socket.socket:
        self._owner = os.getpid()
        folder = os.path.dirname(self.path)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        self._inode = os.stat(self.path).st_ino
        listener.listen(64)
        _say(f"zygote {os.getpid()} listening on {self.path}")
        return listener

    def _start(
        self, conn: socket.socket, selector: selectors.BaseSelector, listener: socket.socket
    ) -> Job | None:
        fds: list[int] = []
        try:
            if _peer_uid(conn) != os.getuid():
                send(conn, {"refused": "another user"})
                conn.close()
                return None
            conn.settimeout(10)
            request, fds = receive(conn, with_fds=True)
            conn.settimeout(None)
            job = self._accept(request, fds)
            if isinstance(job, str):
                send(conn, {"refused": job})
                raise ProtocolError(job)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except (OSError, ProtocolError):
            for fd in fds:
                os.close(fd)
            conn.close()
            return None
        if pid == 0:  # the child
            selector.close()
            listener.close()
            for run in self.runs.values():
                if run.conn is not None:
                    run.conn.close()
            self.runs.clear()
            conn.close()
            return job
        for fd in fds:
            os.close(fd)
        self.runs[pid] = Run(pid, conn)
        selector.register(conn, selectors.EVENT_READ, pid)
        try:
            send(conn, {"pid": pid})
        except OSError:
            self._launcher_gone(selector, pid)
        return None

    def _accept(self, request: dict[str, object], fds: list[int]) -> Job | str:
        """The job to fork, or why not."""
        if self.retired or self._check_sources():
            return "the project's sources changed since the zygote started"
        return Job.parse(request, fds)

    def _check_sources(self) -> bool:
        """Retire if the sources on disk are no longer those imported; whether it did."""
        if self.sources() == self._fingerprint:
            return False
        self.retired = True
        _say(f"zygote {os.getpid()}: the project's sources changed; retiring once its runs end")
        return True

    def _unlink(self) -> None:
        """Remove the socket this zygote bound, not one a successor bound at the same path."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    def _launcher_gone(self, selector: selectors.BaseSelector, pid: int) -> None:
        """The worker no longer waits for this run (its launcher was killed): end the run."""
        run = self.runs.get(pid)
        if run is None or run.conn is None:
            return
        selector.unregister(run.conn)
        run.conn.close()
        run.conn = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def _reap(self, selector: selectors.BaseSelector) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.runs.pop(pid, None)
            if run is None or run.conn is None:
                continue
            selector.unregister(run.conn)
            with contextlib.suppress(OSError):
                send(run.conn, {"exit": os.waitstatus_to_exitcode(status)})  # negative: a signal
            run.conn.close()

    def _end_runs(self) -> None:
        for pid in list(self.runs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def warm_caches() -> None:
    """Fill, once for every run, the caches each run would otherwise fill itself: pure data, and
    the TLS contexts (CA bundles loaded, no connection) its API and vendor clients share."""
    from datetime import date

    import certifi

    from dsar.calendar import is_working_day
    from dsar.prefect_tls import share_api_tls_contexts, shared_context
    from integrations.tls import tls_context

    this_year = date.today().year
    for year in range(this_year - 1, this_year + 3):  # deadlines, extensions, retention dates
        is_working_day(date(year, 1, 1))
    share_api_tls_contexts()
    shared_context(certifi.where())  # Prefect's bundle unless PREFECT_API_SSL_CERT_FILE names one
    tls_context()


class _StopFlag:
    """Set by SIGTERM/SIGINT: the first stops listening, the second ends the runs."""

    def __init__(self) -> None:
        self.requested = self.twice = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._set)

    def _set(self, _signum: int, _frame: object) -> None:
        self.twice = self.requested
        self.requested = True


def _say(message: str) -> None:
    sys.stderr.write(f"dsar.warm: {message}\n")
    sys.stderr.flush()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    return int(_PEERCRED.unpack(creds)[1])


def run_engine(job: Job) -> NoReturn:
    """In the forked child: become the engine process the launcher would have started cold."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    for target, fd in enumerate(job.fds):
        os.dup2(fd, target)
        os.close(fd)
    os.setsid()  # a session of its own, as the stock worker gives its runs
    os.chdir(job.cwd)
    os.environ.clear()
    os.environ.update(job.env)
    random.seed()  # not the zygote's sequence in every run

    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    refresh_global_settings_context()  # the run's own PREFECT_* settings, not the zygote's
    setup_logging(incremental=False)
    sys.argv = ["prefect.engine", *job.argv]
    code = 0
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = _exit_code(done.code)
    except BaseException:  # as the interpreter would: the traceback to stderr, exit code 1
        traceback.print_exc()
        code = 1
    _exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _exit(code: int) -> NoReturn:
    """End the run as the interpreter would, without tearing down what the zygote imported.

    Waits for the run's own non-daemon threads and runs its exit handlers (Prefect's log and
    event flushing among them), then leaves: freeing every preloaded module, as a normal
    interpreter exit does, costs a run more CPU than its own tasks.
    """
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dsar.warm.zygote", description=__doc__)
    parser.add_argument("--socket", default=None, help="Unix socket path (DSAR_WARM_SOCKET)")
    args = parser.parse_args(argv)
    zygote = Zygote(args.socket or default_socket_path())
    zygote.preload()
    job = zygote.serve()
    if job is not None:
        run_engine(job)


if __name__ == "__main__":
    main()

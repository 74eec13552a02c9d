"""Run any ASGI app (an emulator) with uvicorn in a daemon thread on a free local port.

    with serve_in_thread(create_app(state)) as server:
        client = SomeVendorClient(base_url=server.url, ...)

Used by the tests and the demo; it knows nothing about any particular vendor.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import uvicorn

__all__ = ["RunningServer", "free_port", "serve_in_thread"]


class RunningServer:
    """A uvicorn server running in a background thread; ``url`` is its base URL."""

    def __init__(
        self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket, url: str
    ) -> None:
        self.url = url
        self._server = server
        self._thread = thread
        self._sock = sock

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self._sock.getsockname()[1])

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the server to exit and wait for its thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer({self.url})"


def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout_s: float = 10.0
) -> RunningServer:
    """Start ``app`` on ``host:port`` (0 = any free port) and return once it accepts connections."""
    sock = _bind(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="emulator")
    thread.start()
    bound_host, bound_port = sock.getsockname()[:2]
    reach = "127.0.0.1" if bound_host == "0.0.0.0" else bound_host  # noqa: S104 - compare only
    running = RunningServer(server, thread, sock, f"http://{reach}:{bound_port}")
    _wait_until_ready(running, server, thread, startup_timeout_s)
    return running


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port``."""
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it every
    # keep-alive request waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _wait_until_ready(
    running: RunningServer, server: uvicorn.Server, thread: threading.Thread, timeout_s: float
) -> None:
    """Block until the server has started and accepts a TCP connection, or raise RuntimeError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError(f"emulator server on {running.url} exited during startup")
        if server.started and _accepts(running.url):
            return
        time.sleep(0.01)
    running.stop()
    raise RuntimeError(f"emulator server on {running.url} did not start within {timeout_s}s")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free now (for a server whose URL must be known before it starts)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _accepts(url: str) -> bool:
    """True if something accepts TCP connections at ``url`` (``http://host:port``)."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False

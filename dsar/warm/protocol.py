"""The launcher <-> zygote conversation over a Unix socket, standard library only.

The launcher sends one framed JSON request (the run's environment and working directory) with
its standard streams attached as file descriptors; the zygote answers with framed JSON: first
``{"pid": N}`` (or ``{"refused": reason}``), later ``{"exit": code}`` when the run ended.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

__all__ = ["ProtocolError", "default_socket_path", "receive", "send"]

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 4 * 1024 * 1024  # an environment, not a payload
MAX_FDS = 3


class ProtocolError(Exception):
    """The other side sent something that is not a message, or hung up."""


def default_socket_path() -> str:
    """``DSAR_WARM_SOCKET``, else ``warm.sock`` in ``DSAR_VAR_DIR`` (``var`` by default)."""
    explicit = os.environ.get("DSAR_WARM_SOCKET")
    if explicit:
        return explicit
    return os.path.join(os.path.abspath(os.environ.get("DSAR_VAR_DIR") or "var"), "run", "warm.sock")


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    frame = _HEADER.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [frame], fds)
        frame = frame[sent:]
    sock.sendall(frame)


def receive(sock: socket.socket, *, with_fds: bool = False) -> tuple[dict[str, Any], list[int]]:
    """One message (and the descriptors that came with its first bytes, closed if it is refused)."""
    fds: list[int] = []
    try:
        head = _read(sock, _HEADER.size, fds if with_fds else None)
        (size,) = _HEADER.unpack(head)
        if size > MAX_MESSAGE:
            raise ProtocolError(f"message of {size} bytes refused")
        try:
            message = json.loads(_read(sock, size, None))
        except ValueError as exc:
            raise ProtocolError("not JSON") from exc
        if not isinstance(message, dict):
            raise ProtocolError("not a JSON object")
    except ProtocolError:
        _close(fds)
        raise
    return message, fds


def _read(sock: socket.socket, size: int, fds: list[int] | None) -> bytes:
    """Exactly ``size`` bytes; descriptors arriving with the first of them go into ``fds``."""
    data = b""
    while len(data) < size:
        if fds is not None and not data:
            chunk, got, _flags, _addr = socket.recv_fds(sock, size, MAX_FDS)
            fds += got
        else:
            chunk = sock.recv(min(65536, size - len(data)))
        if not chunk:
            raise ProtocolError("connection closed")
        data += chunk
    return data


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)

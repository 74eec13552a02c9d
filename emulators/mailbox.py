"""A real SMTP server on loopback that keeps what it receives: the privacy mailbox and the
processors' inboxes of the demo and the tests.

It speaks SMTP through aiosmtpd, so the pipeline's mail goes over a real socket exactly as
it would to the company's relay. ``refuse_next`` makes it answer 451 (try again later) to
the next messages, to test that an outage delays mail without losing it; ``down()`` stops
listening altogether (connections are refused, as with a stopped relay) until ``up()``.
"""

from __future__ import annotations

import socket
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["Mailbox"]


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox

    # aiosmtpd looks the hook up by this exact name.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self._mailbox.receive(envelope.content, list(envelope.rcpt_tos))


class Mailbox:
    """An SMTP server on 127.0.0.1 that stores every message (and writes .eml files if asked)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_next = 0
        self.delay_s = 0.0  # a slow server, to let concurrent senders overlap
        self._folder = folder
        self._lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=_free_port())
        self._down = False

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def is_down(self) -> bool:
        return self._down

    def down(self) -> None:
        """Stop listening: senders meet a refused connection, nothing is received."""
        if not self._down:
            self._controller.stop()
            self._down = True

    def up(self) -> None:
        """Listen again, on the same port."""
        if self._down:
            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
            self._controller.start()
            self._down = False

    def receive(self, content: bytes, recipients: list[str]) -> str:
        time.sleep(self.delay_s)
        with self._lock:
            if self.refuse_next:
                self.refuse_next -= 1
                return "451 4.3.0 mailbox busy, try again later"
            message = message_from_bytes(content, policy=policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
            if self._folder:
                self._folder.mkdir(parents=True, exist_ok=True)
                (self._folder / f"{len(self.messages):04d}.eml").write_bytes(content)
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address in str(m["To"])]

    def __enter__(self) -> Mailbox:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._down:
            self._controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

"""A stand-in person who checks something every few moments until stopped (operator, data subject)."""

from __future__ import annotations

import threading
from typing import Self

__all__ = ["Poller"]


class Poller:
    """Runs ``poll()`` every ``poll_s`` seconds in a daemon thread while used as a context manager."""

    def __init__(self, *, poll_s: float, name: str) -> None:
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self.setup()
        try:
            while not self._stop.wait(self._poll_s):
                self.poll()
        finally:
            self.teardown()

    def setup(self) -> None:
        """Before the first poll (in the thread)."""

    def poll(self) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        """After the last poll (in the thread)."""

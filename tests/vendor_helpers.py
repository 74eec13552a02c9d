"""What every vendor's emulator test needs: the emulator running, and checks that nothing personal leaks.

A test module defines a module-scoped ``server`` fixture (``yield from run_emulator(state,
create_app)``) and takes the ``url`` and ``waits`` fixtures from here by assigning them
(``url, waits = vendor_helpers.url, vendor_helpers.waits``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from emulators.server import RunningServer, serve_in_thread
from integrations.errors import IntegrationError

__all__ = ["assert_clean", "assert_no_personal_logs", "run_emulator"]

State = TypeVar("State")


def run_emulator(state: State, create_app: Callable[[State], Any]) -> Iterator[tuple[RunningServer, State]]:
    """Serve ``create_app(state)`` over real HTTP in a thread; yields the server and the state."""
    with serve_in_thread(create_app(state)) as running:
        yield running, state


@pytest.fixture
def url(server: tuple[RunningServer, Any]) -> str:
    """The emulator's base URL."""
    return server[0].url


@pytest.fixture
def waits() -> list[float]:
    """The client's sleeps, recorded instead of slept (pass ``sleep=waits.append``)."""
    return []


def assert_clean(exc: IntegrationError, personal: tuple[str, ...]) -> None:
    """No personal value (in any case) and no URL in what an error says."""
    for text in (str(exc), exc.summary()):
        assert not [value for value in personal if value.casefold() in text.casefold()]
        assert "http" not in text
        assert "://" not in text


def assert_no_personal_logs(caplog: pytest.LogCaptureFixture, personal: tuple[str, ...]) -> None:
    """Something was logged, and no message holds a personal value (in any case)."""
    messages = [record.getMessage().casefold() for record in caplog.records]
    assert messages
    assert not [m for m in messages if any(value.casefold() in m for value in personal)]

"""Shared fixtures. Prefect and the ledger each get their own throw-away home."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Before anything imports prefect: a private PREFECT_HOME, no telemetry from an offline box.
_PREFECT_HOME = tempfile.mkdtemp(prefix="dsar-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)

import pytest  # noqa: E402

pytest.register_assert_rewrite("tests.vendor_helpers")
from cryptography.fernet import Fernet  # noqa: E402

from dsar.ledger import Ledger  # noqa: E402
from dsar.settings import Settings  # noqa: E402
from tests.databases import make_database_url  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The ledger's database: SQLite, and the loopback PostgreSQL and MariaDB."""
    with make_database_url(request.param) as url:
        yield url


def make_settings(var_dir: Path, **overrides: object) -> Settings:
    """Settings for tests: fixed keys, everything under ``var_dir``."""
    values: dict[str, object] = {
        "var_dir": var_dir,
        "encryption_key": Fernet.generate_key().decode(),
        "hash_key": "test-hash-key",
        # Erasure tests approve their plans by policy; tests/test_erasure.py answers the form instead.
        "erasure_approval": "automatic",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def flow_settings(
    var_dir: Path, ledger_url: str, systems_file: Path, smtp_port: int, **overrides: object
) -> Settings:
    """Settings for flows against the emulators: quick retries, the loopback SMTP server, 1 s polls."""
    values: dict[str, object] = {
        "ledger_url": ledger_url,
        "systems_file": systems_file,
        "task_retries": 1,
        "task_retry_delay_s": 0,
        "http_backoff_base_s": 0.01,
        "http_max_attempts": 2,
        "smtp_port": smtp_port,
        "operator_poll_s": 1,
    }
    return make_settings(var_dir, **(values | overrides))


@pytest.fixture
def ledger(ledger_url: str, tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(make_settings(tmp_path, ledger_url=ledger_url))
    yield ledger
    ledger.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """One Prefect test server for the session (~15 s); yields the URL of its database."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield PREFECT_SERVER_DATABASE_CONNECTION_URL.value()

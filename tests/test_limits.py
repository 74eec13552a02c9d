"""Per-vendor rate limiting through Prefect's global concurrency limits."""

from __future__ import annotations

import threading
import time

import pytest
from prefect.client.orchestration import get_client

from dsar.limits import ensure_vendor_limits, limit_name, vendor_slot

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


def test_limits_are_created_and_corrected() -> None:
    ensure_vendor_limits({"hubspot": 3, "tripletex": 1})
    ensure_vendor_limits({"hubspot": 2})  # a changed setting is applied, not duplicated
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name("hubspot")).limit == 2
        assert client.read_global_concurrency_limit_by_name(limit_name("tripletex")).limit == 1


def test_a_limit_of_one_lets_one_step_talk_to_the_vendor_at_a_time() -> None:
    # A kind of its own: a slot another test's killed worker still leases must not count here.
    ensure_vendor_limits({"limits-test": 1})
    inside, most = 0, 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal inside, most
        with vendor_slot("limits-test", {"limits-test": 1}, timeout_s=60):
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.3)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=step) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 1


def test_kinds_without_a_limit_are_not_throttled() -> None:
    with vendor_slot("sql", {"zendesk": 1}, timeout_s=1):
        pass  # no Prefect call at all: nothing to acquire


def test_first_runs_racing_to_create_a_limit_all_succeed() -> None:
    """Concurrent first requests on a fresh server: the losers of the create race read the winner's."""
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def first_run() -> None:
        start.wait()
        try:
            ensure_vendor_limits({"racing-vendor": 2})
        except BaseException as exc:  # the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=first_run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name("racing-vendor")).limit == 2

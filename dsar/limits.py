"""Per-vendor concurrency limits, kept in Prefect so every worker shares them.

Each vendor kind with a configured limit (``DSAR_VENDOR_CONCURRENCY``) gets a Prefect global
concurrency limit named ``dsar-<kind>``; every step against a system of that kind holds one
slot while it talks to the vendor. Limits are created or corrected when a request starts, so
a fresh Prefect server needs no manual set-up.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

__all__ = ["ensure_vendor_limits", "limit_name", "vendor_slot"]


def limit_name(kind: str) -> str:
    return f"dsar-{kind}"


def ensure_vendor_limits(limits: Mapping[str, int]) -> None:
    """Create each vendor's limit, or set it to the configured size."""
    with get_client(sync_client=True) as client:
        for kind, size in limits.items():
            name = limit_name(kind)
            try:
                existing = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(name=name, limit=size)
                    )
                    continue
                except ObjectAlreadyExists:  # another request's first run created it meanwhile
                    existing = client.read_global_concurrency_limit_by_name(name)
            if existing.limit != size:
                client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=size))


@contextmanager
def vendor_slot(kind: str, limits: Mapping[str, int], timeout_s: float) -> Iterator[None]:
    """Hold one of the vendor's slots (vendors without a limit are not throttled)."""
    if kind not in limits:
        with nullcontext():
            yield
        return
    with concurrency(limit_name(kind), occupy=1, timeout_seconds=timeout_s, strict=True):
        yield

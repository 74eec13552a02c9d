"""Prefect's API clients share one verifying TLS context per CA bundle instead of building their own.

Prefect 3.9 builds a fresh ``ssl.SSLContext`` for every API client it opens, and loading the CA
bundle costs about 17 ms of CPU each time. It opens a client for each concurrency slot taken and
each released, each deployment step, the events and log workers, the suspension and cancellation
observers...: a flow run of an access request built about fifty contexts, a fifth of its CPU.
Prefect reads no setting for a shared context (PrefectHQ/prefect#19106 proposes one), so the
modules that build them get a stand-in for ``ssl`` whose ``create_default_context`` returns one
context per CA bundle (file and its modification time, directory or data): the same verification,
built once per process. Contexts without a CA bundle (``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``:
Prefect then switches verification off on them) are built fresh, as before.

Sharing is safe: Prefect and httpx only read a context they are given (httpcore sets the same
ALPN protocols on it for every connection), and CPython's contexts may be used from any thread.
"""

from __future__ import annotations

import functools
import importlib
import os
import ssl
from typing import Any

__all__ = ["CLIENT_MODULES", "share_api_tls_contexts", "shared_context"]

# Prefect's modules that build a context for a client of its API (``grep create_default_context``).
CLIENT_MODULES = (
    "prefect.client.orchestration",
    "prefect._internal.websockets",
    "prefect._internal.version_checking",
)


class _SharingSsl:
    """``ssl`` as Prefect's client modules see it: shared verifying contexts, the rest unchanged."""

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    @staticmethod
    def create_default_context(
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        if cafile is None and capath is None and cadata is None:
            return ssl.create_default_context(purpose)  # the caller turns verification off on it
        # A replaced bundle file is loaded again; an unreadable one fails as it would unshared.
        modified = os.stat(cafile).st_mtime_ns if cafile is not None else None
        return _verifying_context(purpose, cafile, modified, capath, cadata)


@functools.cache
def _verifying_context(
    purpose: ssl.Purpose,
    cafile: str | None,
    _modified: int | None,
    capath: str | None,
    cadata: str | bytes | None,
) -> ssl.SSLContext:
    return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)


_SHARING = _SharingSsl()


def shared_context(cafile: str) -> ssl.SSLContext:
    """The context Prefect's clients get for the CA bundle ``cafile`` (built on first use)."""
    return _SHARING.create_default_context(cafile=cafile)


def share_api_tls_contexts() -> None:
    """Make this process's Prefect API clients share their TLS contexts (idempotent)."""
    for name in CLIENT_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "ssl", None) is ssl:  # as Prefect 3.9 has it; otherwise leave it be
            module.ssl = _SHARING  # type: ignore[attr-defined]

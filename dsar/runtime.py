"""What a running process needs: settings, the ledger, the configured systems, documents.

Prefect tasks receive only request ids and system names (no secrets, no personal data), so
they reach everything else through the process's :class:`Runtime`. The entry point (CLI,
``dsar serve``, a deployment's worker, a test) builds it once; :func:`current` builds one
from the environment when nobody did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # weasyprint is heavy: loaded only when a document is rendered
    from dsar.documents import Controller, DocumentRenderer

from dsar.ledger import Ledger
from dsar.settings import Settings
from dsar.systems import SystemSpec, load_specs
from integrations.base import System
from integrations.errors import ConfigurationError
from integrations.http import HttpPolicy

__all__ = ["Runtime", "current", "install", "using"]


@dataclass
class Runtime:
    settings: Settings
    ledger: Ledger
    specs: tuple[SystemSpec, ...]
    transports: Mapping[str, httpx.BaseTransport] = field(default_factory=dict)  # tests may inject

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        if settings.systems_file is None:
            raise ConfigurationError("no systems configured: set DSAR_SYSTEMS_FILE")
        return cls(settings=settings, ledger=Ledger(settings), specs=load_specs(settings.systems_file))

    @property
    def system_names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def spec(self, name: str) -> SystemSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise ConfigurationError(f"system {name!r} is not configured")

    def system(self, name: str) -> System:
        """A fresh client for one configured system (the caller closes it)."""
        return self.spec(name).build(self.http_policy, self.transports.get(name))

    @cached_property
    def http_policy(self) -> HttpPolicy:
        s = self.settings
        return HttpPolicy(
            timeout_s=s.http_timeout_s,
            max_attempts=s.http_max_attempts,
            retry_after_cap_s=s.retry_after_cap_s,
            backoff_base_s=s.http_backoff_base_s,
        )

    @cached_property
    def renderer(self) -> DocumentRenderer:
        from dsar.documents import DocumentRenderer

        return DocumentRenderer(self.settings.templates_dir)

    @property
    def controller(self) -> Controller:
        from dsar.documents import Controller

        s = self.settings
        return Controller(
            name=s.controller_name,
            org_number=s.controller_org_number,
            address=s.controller_address,
            email=s.controller_email,
            dpo_email=s.controller_dpo_email,
        )

    def close(self) -> None:
        self.ledger.close()


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime.from_settings(Settings())
        return _current


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the process's runtime (None forgets it)."""
    global _current
    with _lock:
        _current = runtime


@contextmanager
def using(runtime: Runtime) -> Iterator[Runtime]:
    """Install ``runtime`` for the duration of a block (tests, the demo)."""
    previous = _current
    install(runtime)
    try:
        yield runtime
    finally:
        install(previous)

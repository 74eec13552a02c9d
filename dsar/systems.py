"""The systems file: every system that may hold personal data, how to reach it, and what the
processing register says about it.

    systems:
      - name: crm                        # unique; what the ledger, reports and logs call it
        kind: hubspot                    # a key of integrations.registry.REGISTRY
        base_url: https://api.hubapi.com
        token: env:DSAR_HUBSPOT_TOKEN    # "env:NAME" reads a secret from the environment
        register: {...}                  # dsar.register.RegisterEntry

Secrets are resolved from the environment when a client is built, never stored in the spec.
Relative ``dataset`` paths are relative to the systems file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from dsar.register import RegisterEntry
from dsar.yaml_files import read_yaml
from integrations.base import System
from integrations.errors import ConfigurationError
from integrations.http import HttpPolicy
from integrations.registry import REGISTRY, build_system

__all__ = ["SystemSpec", "load_specs"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class SystemSpec:
    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    register: RegisterEntry | None = None

    def build(self, policy: HttpPolicy, transport: httpx.BaseTransport | None = None) -> System:
        """A client for this system, with secrets read from the environment now."""
        return build_system(self.name, self.kind, _resolve_env(self.name, self.options), policy, transport)


def _resolve_env(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, str) and value.startswith("env:"):
            variable = value.removeprefix("env:")
            if variable not in os.environ:
                raise ConfigurationError(f"system {name!r}: environment variable {variable} is not set")
            value = os.environ[variable]
        resolved[key] = value
    return resolved


def load_specs(path: Path) -> tuple[SystemSpec, ...]:
    """Read and check the systems file."""
    try:
        document = read_yaml(path) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read systems file {path}: {type(exc).__name__}") from None
    entries = document.get("systems") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigurationError(f"{path}: expected a non-empty 'systems' list")
    specs = tuple(_spec(entry, path.parent) for entry in entries)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"{path}: system names must be unique")
    return specs


def _spec(entry: Any, base: Path) -> SystemSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "kind" not in entry:
        raise ConfigurationError("every system needs a 'name' and a 'kind'")
    name, kind = entry["name"], str(entry["kind"])
    if not _NAME.match(name):
        raise ConfigurationError(f"system name {name!r}: use lowercase letters, digits and dashes")
    if kind not in REGISTRY:
        raise ConfigurationError(
            f"system {name!r}: unknown kind {kind!r} (known: {', '.join(sorted(REGISTRY))})"
        )
    options = {k: v for k, v in entry.items() if k not in ("name", "kind", "register")}
    if isinstance(options.get("dataset"), str):
        options["dataset"] = str((base / options["dataset"]).resolve())
    return SystemSpec(name=name, kind=kind, options=options, register=_register(name, entry.get("register")))


def _register(name: str, raw: Any) -> RegisterEntry | None:
    if raw is None:
        return None
    try:
        return RegisterEntry.model_validate(raw)
    except ValidationError as exc:
        fields = ", ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'} ({e['msg']})" for e in exc.errors())
        raise ConfigurationError(f"system {name!r}: invalid register entry: {fields}") from None

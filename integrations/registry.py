"""The explicit registry: a system's ``kind`` names the class that speaks to it.

Systems are configured in a YAML file (``DSAR_SYSTEMS_FILE``)::

    systems:
      - name: crm                 # unique; what the ledger, reports and logs call it
        kind: hubspot             # a key of REGISTRY
        base_url: https://api.hubapi.com
        token: env:DSAR_HUBSPOT_TOKEN    # "env:NAME" reads a secret from the environment
      - name: app-db
        kind: sql
        url: env:DSAR_APP_DB_URL
        dataset: datasets/app_db.yaml

Each kind validates its own options with a pydantic model, so a typo fails at start-up
with the system's name in the message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from integrations.base import System
from integrations.errors import ConfigurationError
from integrations.http import HttpPolicy

__all__ = ["REGISTRY", "ConfigurationError", "SystemSpec", "build_system", "load_specs"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


@dataclass(frozen=True)
class SystemSpec:
    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)


Factory = Callable[[str, Mapping[str, Any], HttpPolicy, httpx.BaseTransport | None], System]


def _hubspot(
    name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: httpx.BaseTransport | None
) -> System:
    from integrations import hubspot

    return hubspot.from_config(name, hubspot.HubSpotConfig.model_validate(options), policy, transport)


def _sql(
    name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: httpx.BaseTransport | None
) -> System:
    from integrations import sql

    return sql.from_config(name, sql.SqlConfig.model_validate(options))


REGISTRY: dict[str, Factory] = {"hubspot": _hubspot, "sql": _sql}


def build_system(
    spec: SystemSpec, policy: HttpPolicy, transport: httpx.BaseTransport | None = None
) -> System:
    """Instantiate the configured system; unknown kinds and bad options fail clearly."""
    factory = REGISTRY.get(spec.kind)
    if factory is None:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigurationError(f"system {spec.name!r}: unknown kind {spec.kind!r} (known: {known})")
    try:
        return factory(spec.name, _resolve_env(spec), policy, transport)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise ConfigurationError(f"system {spec.name!r}: invalid options: {fields}") from None


def _resolve_env(spec: SystemSpec) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in spec.options.items():
        if isinstance(value, str) and value.startswith("env:"):
            variable = value.removeprefix("env:")
            if variable not in os.environ:
                raise ConfigurationError(f"system {spec.name!r}: environment variable {variable} is not set")
            value = os.environ[variable]
        resolved[key] = value
    return resolved


def load_specs(path: Path) -> tuple[SystemSpec, ...]:
    """Read and check the systems file; relative paths in it are relative to the file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read systems file {path}: {type(exc).__name__}") from exc
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
    options = {k: v for k, v in entry.items() if k not in ("name", "kind")}
    if not _NAME.match(entry["name"]):
        raise ConfigurationError(f"system name {entry['name']!r}: use lowercase letters, digits and dashes")
    if isinstance(options.get("dataset"), str):
        options["dataset"] = str((base / options["dataset"]).resolve())
    return SystemSpec(name=entry["name"], kind=str(entry["kind"]), options=options)

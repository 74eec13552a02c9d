"""The explicit registry: a system's ``kind`` names the class that speaks to it.

Each kind validates its own options with its pydantic config model, so a typo fails at
start-up with the system's name in the message. Adding a system kind is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from integrations.base import System
from integrations.errors import ConfigurationError
from integrations.http import HttpPolicy

__all__ = ["REGISTRY", "build_system", "kinds"]

Transport = httpx.BaseTransport | None
Factory = Callable[[str, Mapping[str, Any], HttpPolicy, Transport], System]


def _validated(model: type[BaseModel], options: Mapping[str, Any]) -> Any:
    return model.model_validate(options)


def _hubspot(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import hubspot

    return hubspot.from_config(name, _validated(hubspot.HubSpotConfig, options), policy, transport)


def _sql(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import sql

    return sql.from_config(name, _validated(sql.SqlConfig, options))


def _manual(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import manual

    return manual.from_config(name, _validated(manual.ManualConfig, options))


def _poweroffice(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import poweroffice

    return poweroffice.from_config(
        name, _validated(poweroffice.PowerOfficeConfig, options), policy, transport
    )


def _twentyfour(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import twentyfour

    return twentyfour.from_config(name, _validated(twentyfour.TwentyFourConfig, options), policy, transport)


def _tripletex(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import tripletex

    return tripletex.from_config(name, _validated(tripletex.TripletexConfig, options), policy, transport)


def _zendesk(name: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport) -> System:
    from integrations import zendesk

    return zendesk.from_config(name, _validated(zendesk.ZendeskConfig, options), policy, transport)


REGISTRY: dict[str, Factory] = {
    "hubspot": _hubspot,
    "sql": _sql,
    "manual": _manual,
    "poweroffice": _poweroffice,
    "24sevenoffice": _twentyfour,
    "tripletex": _tripletex,
    "zendesk": _zendesk,
}


def kinds() -> list[str]:
    return sorted(REGISTRY)


def build_system(
    name: str, kind: str, options: Mapping[str, Any], policy: HttpPolicy, transport: Transport = None
) -> System:
    """Instantiate one configured system; unknown kinds and bad options fail clearly."""
    factory = REGISTRY.get(kind)
    if factory is None:
        raise ConfigurationError(f"system {name!r}: unknown kind {kind!r} (known: {', '.join(kinds())})")
    try:
        return factory(name, options, policy, transport)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "options" for e in exc.errors())
        raise ConfigurationError(f"system {name!r}: invalid options: {fields}") from None

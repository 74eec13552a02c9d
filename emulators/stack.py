"""Every emulated system, started and seeded together, with the systems file that points at them.

The systems file is ``config/systems.example.yaml`` itself, with each system's connection
options replaced by those of its local emulator; its processing-register facts are kept.
``dsar demo`` and the end-to-end tests use it, so both exercise the same wiring a real
deployment uses: a systems file read by the registry, real HTTP, real SQL, real SMTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
import yaml
from starlette.applications import Starlette

from emulators import internal_db, poweroffice, sms_log, tripletex, twentyfour, zendesk
from emulators.demo_data import seed_hubspot
from emulators.hubspot import HubSpotState
from emulators.hubspot import create_app as hubspot_app
from emulators.mailbox import Mailbox
from emulators.server import serve_in_thread

__all__ = ["EXAMPLE_SYSTEMS", "EmulatorStack", "emulator_stack"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SYSTEMS = ROOT / "config" / "systems.example.yaml"
HUBSPOT_TOKEN = "pat-eu1-demo-emulator-token"  # a token the emulator accepts; not a real secret


@dataclass
class EmulatorStack:
    folder: Path
    exits: ExitStack
    mailbox: Mailbox
    states: dict[str, Any] = field(default_factory=dict)  # system name -> emulator state or engine
    systems_file: Path = Path()

    def serve(self, app: Starlette) -> str:
        return self.exits.enter_context(serve_in_thread(app)).url

    def database(self, name: str) -> sa.Engine:
        engine = sa.create_engine(f"sqlite:///{(self.folder / f'{name}.sqlite').resolve()}")
        self.exits.callback(engine.dispose)
        return engine

    @property
    def hubspot(self) -> HubSpotState:
        state: HubSpotState = self.states["hubspot-crm"]
        return state

    @property
    def app_db(self) -> sa.Engine:
        engine: sa.Engine = self.states["app-db"]
        return engine


def _hubspot(stack: EmulatorStack) -> dict[str, Any]:
    state = HubSpotState(token=HUBSPOT_TOKEN)
    seed_hubspot(state)
    stack.states["hubspot-crm"] = state
    return {"base_url": stack.serve(hubspot_app(state)), "token": HUBSPOT_TOKEN}


def _sql(name: str, schema: ModuleType, dataset: str) -> Starter:
    """A starter for an internal SQL system: a fresh SQLite file with its schema and demo rows."""

    def start(stack: EmulatorStack) -> dict[str, Any]:
        engine = stack.states[name] = stack.database(name)
        schema.create_schema(engine)
        schema.seed_demo_rows(engine)
        return {"url": engine.url.render_as_string(hide_password=False), "dataset": str(ROOT / dataset)}

    return start


def _poweroffice(stack: EmulatorStack) -> dict[str, Any]:
    state = stack.states["poweroffice-go"] = poweroffice.PowerOfficeState()
    poweroffice.seed_demo(state)
    url = stack.serve(poweroffice.create_app(state))
    return {
        "base_url": f"{url}/v2",
        "token_url": f"{url}/OAuth/Token",
        "application_key": state.application_key,
        "client_key": state.client_key,
        "subscription_key": state.subscription_key,
    }


def _twentyfour(stack: EmulatorStack) -> dict[str, Any]:
    state = stack.states["twentyfour"] = twentyfour.TwentyFourState(page_size=5)
    twentyfour.seed_demo(state)
    url = stack.serve(twentyfour.create_app(state))
    return {
        "base_url": f"{url}/v1",
        "token_url": f"{url}/oauth/token",
        "client_id": state.client_id,
        "client_secret": state.client_secret,
        "organization_id": state.organization_id,
        "page_size": 5,
    }


def _tripletex(stack: EmulatorStack) -> dict[str, Any]:
    state = stack.states["tripletex"] = tripletex.TripletexState(page_size=5)
    tripletex.seed_demo(state)
    url = stack.serve(tripletex.create_app(state))
    return {
        "base_url": f"{url}/v2",
        "consumer_token": state.consumer_token,
        "employee_token": state.employee_token,
    }


def _zendesk(stack: EmulatorStack) -> dict[str, Any]:
    state = stack.states["zendesk-support"] = zendesk.ZendeskState()
    zendesk.seed_demo(state)
    url = stack.serve(zendesk.create_app(state))
    return {"base_url": url, "agent_email": state.agent_email, "api_token": state.api_token}


def _as_configured(stack: EmulatorStack) -> dict[str, Any]:
    return {}  # no connection to emulate: the example's own options stand (manual systems)


Starter = Callable[[EmulatorStack], dict[str, Any]]
STARTERS: dict[str, Starter] = {
    "hubspot-crm": _hubspot,
    "app-db": _sql("app-db", internal_db, "datasets/app_db.yaml"),
    "sms-log": _sql("sms-log", sms_log, "datasets/sms_log.yaml"),
    "link-mobility": _as_configured,
    "poweroffice-go": _poweroffice,
    "twentyfour": _twentyfour,
    "tripletex": _tripletex,
    "zendesk-support": _zendesk,
}


@contextmanager
def emulator_stack(folder: Path, *, only: Iterable[str] | None = None) -> Iterator[EmulatorStack]:
    """Start and seed the emulators (all of them, or ``only`` these systems); write the systems file."""
    folder.mkdir(parents=True, exist_ok=True)
    example = yaml.safe_load(EXAMPLE_SYSTEMS.read_text(encoding="utf-8"))["systems"]
    wanted = set(only) if only is not None else {entry["name"] for entry in example}
    with ExitStack() as exits, Mailbox(folder / "mail") as mailbox:
        stack = EmulatorStack(folder=folder, exits=exits, mailbox=mailbox)
        systems = [_emulated(stack, entry) for entry in example if entry["name"] in wanted]
        stack.systems_file = folder / "systems.yaml"
        stack.systems_file.write_text(
            yaml.safe_dump({"systems": systems}, sort_keys=False, allow_unicode=True)
        )
        yield stack


def _emulated(stack: EmulatorStack, entry: dict[str, Any]) -> dict[str, Any]:
    starter = STARTERS.get(entry["name"])
    if starter is None:
        raise KeyError(f"no emulator for system {entry['name']!r}")
    options = starter(stack)
    kept = {k: v for k, v in entry.items() if k in ("name", "kind", "register") or not options}
    return kept | options

"""Every emulated system, started and seeded together, with the systems file that points at them.

Used by ``dsar demo`` and by the end-to-end tests, so both exercise the same wiring a real
deployment uses: a systems file read by the registry, real HTTP, a real SQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml

from emulators.demo_data import seed_hubspot, seed_internal_db
from emulators.hubspot import HubSpotState, create_app
from emulators.server import serve_in_thread

__all__ = ["DATASET", "EmulatorStack", "emulator_stack"]

DATASET = Path(__file__).resolve().parents[1] / "datasets" / "app_db.yaml"
HUBSPOT_TOKEN = "pat-eu1-demo-emulator-token"  # a token the emulator accepts; not a real secret


@dataclass(frozen=True)
class EmulatorStack:
    hubspot: HubSpotState
    hubspot_url: str
    app_db: sa.Engine
    app_db_url: str
    systems_file: Path


@contextmanager
def emulator_stack(folder: Path, *, app_db_url: str | None = None) -> Iterator[EmulatorStack]:
    """Start and seed the emulators; write ``folder/systems.yaml`` describing them."""
    folder.mkdir(parents=True, exist_ok=True)
    url = app_db_url or f"sqlite:///{(folder / 'app-db.sqlite').resolve()}"
    with ExitStack() as stack:
        state = HubSpotState(token=HUBSPOT_TOKEN)
        seed_hubspot(state)
        server = stack.enter_context(serve_in_thread(create_app(state)))
        engine = sa.create_engine(url)
        stack.callback(engine.dispose)
        seed_internal_db(engine)
        systems_file = folder / "systems.yaml"
        systems_file.write_text(
            yaml.safe_dump(
                {
                    "systems": [
                        {
                            "name": "hubspot-crm",
                            "kind": "hubspot",
                            "base_url": server.url,
                            "token": HUBSPOT_TOKEN,
                        },
                        {"name": "app-db", "kind": "sql", "url": url, "dataset": str(DATASET)},
                    ]
                },
                sort_keys=False,
            ),
            encoding="utf-8",
        )
        yield EmulatorStack(state, server.url, engine, url, systems_file)

"""One contract, every system: the same checks over each system the example configuration names.

Each system runs against its own emulator (or real SQL database) with the demo data, through
the same systems file and registry the pipeline uses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dsar.systems import SystemSpec, load_specs
from emulators.demo_data import DEMO_SUBJECT
from emulators.stack import EXAMPLE_SYSTEMS, STARTERS, emulator_stack
from integrations.base import Subject, System
from integrations.errors import NeedsOperator
from integrations.http import HttpPolicy
from integrations.registry import REGISTRY

EXAMPLE = yaml.safe_load(EXAMPLE_SYSTEMS.read_text(encoding="utf-8"))["systems"]
AUTOMATED = [entry["name"] for entry in EXAMPLE if entry["kind"] != "manual"]
MANUAL = [entry["name"] for entry in EXAMPLE if entry["kind"] == "manual"]
KARI = Subject(email=DEMO_SUBJECT.email.lower(), phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
STRANGER = Subject(email="nobody.here@example.no", phone="+4799999999")
POLICY = HttpPolicy(timeout_s=5, max_attempts=2, backoff_base_s=0.01)


def build(folder: Path) -> tuple[SystemSpec, System]:
    [spec] = load_specs(folder / "systems.yaml")
    return spec, spec.build(POLICY)


@pytest.mark.parametrize("name", AUTOMATED)
def test_lookup_export_erase_recheck(name: str, tmp_path: Path) -> None:
    with emulator_stack(tmp_path, only=(name,)):
        spec, system = build(tmp_path)
        try:
            assert isinstance(system, System)
            assert system.kind == spec.kind
            system.check()

            found = system.lookup(KARI)
            assert found.found
            export = system.export(KARI)
            assert export.counts() == {category: n for category, n in found.counts.items() if n}
            assert spec.register is not None
            assert set(export.counts()) <= set(spec.register.categories)  # the register declares what we hold
            assert not system.lookup(STRANGER).found  # a definite "none", not an error

            outcome = system.erase(KARI)
            assert outcome.total > 0
            assert not system.lookup(KARI).found  # the re-check after erasure
            assert system.erase(KARI).total == 0  # already gone is success
        finally:
            system.close()


@pytest.mark.parametrize("name", MANUAL)
def test_systems_without_an_api_ask_an_operator(name: str, tmp_path: Path) -> None:
    with emulator_stack(tmp_path, only=(name,)):
        _, system = build(tmp_path)
        for step in (system.lookup, system.export, system.erase):
            with pytest.raises(NeedsOperator) as asked:
                step(KARI)
            assert asked.value.instructions
            assert "kari" not in str(asked.value).lower()


def test_the_example_configuration_covers_every_registered_kind() -> None:
    assert {entry["kind"] for entry in EXAMPLE} == set(REGISTRY)


def test_every_example_system_has_a_register_entry_and_an_emulator() -> None:
    specs = {entry["name"]: entry for entry in EXAMPLE}
    assert set(specs) == set(STARTERS)
    for entry in EXAMPLE:
        assert "register" in entry, entry["name"]

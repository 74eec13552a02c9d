"""The fault scenarios of issue 8 that fit CI (see tests/fault_scenarios.py): one test each, SQLite.

Scenario 8 (PostgreSQL restarted) and 10 (Prefect server restarted) disturb services other tests
share, and run only in ``scripts/fault_scenarios.py``; scenario 7 runs on PostgreSQL as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault_scenarios import CI_SCENARIOS, Scenario

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

CASES = [pytest.param(s, "sqlite", id=f"{s.number:02d}-sqlite") for s in CI_SCENARIOS]
CASES += [
    pytest.param(s, "postgresql", id=f"{s.number:02d}-postgresql") for s in CI_SCENARIOS if s.number == 7
]


@pytest.mark.parametrize(("scenario", "ledger"), CASES)
def test_the_pipeline_survives(scenario: Scenario, ledger: str, tmp_path: Path) -> None:
    scenario.run(tmp_path, ledger)

#!/usr/bin/env python
"""Run the fault scenarios of issue 8 (tests/fault_scenarios.py) and print their table.

    .venv/bin/python scripts/fault_scenarios.py [--only 1,6,8] [--ledger sqlite|postgresql]

All twelve by default, including 8 (restarts the loopback PostgreSQL: never in CI, other tests
share that server) and 10 (a separate `prefect server start`, killed and started again). Each
scenario's failure is caught and reported; the exit status is 0 only if every scenario survived.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tests.conftest  # noqa: E402,F401  # first: a private PREFECT_HOME before prefect is imported
from tests.fault_scenarios import SCENARIOS, Scenario, prefect_api  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all 12)")
    parser.add_argument("--ledger", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--verbose", action="store_true", help="show Prefect's logs and tracebacks")
    args = parser.parse_args(argv)
    wanted = {int(n) for n in args.only.split(",")} if args.only else {s.number for s in SCENARIOS}
    chosen = [s for s in SCENARIOS if s.number in wanted]
    if not args.verbose:
        logging.disable(logging.WARNING)
    rows: list[tuple[Scenario, str, float]] = []
    with prefect_api():
        for scenario in chosen:
            rows.append(run_one(scenario, args.ledger, verbose=args.verbose))
            sys.stderr.write(f"  {scenario.number:>2}. {rows[-1][1]} ({rows[-1][2]:.0f} s)\n")
    print_table(rows, total=len(SCENARIOS) if not args.only else len(chosen))
    return 0 if all(outcome == "survived" for _, outcome, _ in rows) else 1


def run_one(scenario: Scenario, ledger: str, *, verbose: bool) -> tuple[Scenario, str, float]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"fault-{scenario.number:02d}-") as folder:
        try:
            scenario.run(Path(folder), ledger)
            outcome = "survived"
        except BaseException as exc:  # a scenario's failure is its row, not the end of the script
            if isinstance(exc, KeyboardInterrupt):
                raise
            if verbose:
                traceback.print_exc()
            reason = str(exc).splitlines()[0] if str(exc) else ""
            outcome = f"FAILED: {type(exc).__name__}: {reason}"[:160]
    return scenario, outcome, time.monotonic() - started


def print_table(rows: list[tuple[Scenario, str, float]], *, total: int) -> None:
    width = max(len(s.name) for s, _, _ in rows) if rows else 10
    lines = [f"{'#':>2}  {'scenario':<{width}}  {'seconds':>7}  outcome"]
    for scenario, outcome, seconds in rows:
        lines.append(f"{scenario.number:>2}  {scenario.name:<{width}}  {seconds:>7.1f}  {outcome}")
    survived = sum(outcome == "survived" for _, outcome, _ in rows)
    lines.append(f"faults survived: {survived}/{total}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())

"""The SQL erasure benchmark runs, and both strategies leave the same database behind.

Timings are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_sql_erasure import OTHER_PEOPLE, SUBJECT, main, run
from tests.databases import make_database_url


def test_main_prints_the_speedup_line(capsys: pytest.CaptureFixture[str]) -> None:
    result = main(["--rows", "20"])
    printed = capsys.readouterr().out
    assert "sql_erasure_speedup_vs_row_by_row: " in printed
    assert result.rows == 20
    assert result.set_based_seconds > 0
    assert result.row_by_row_seconds > 0


def test_both_strategies_leave_the_same_end_state() -> None:
    result = run(None, rows=30)
    assert result.set_based_state == result.row_by_row_state
    state = result.set_based_state
    assert SUBJECT.email not in {email for _, email in state["bench_customers"]}
    assert len(state["bench_customers"]) == OTHER_PEOPLE
    assert len(state["bench_products"]) == 10, "the catalogue the orders point at survives"
    kept = [row for row in state["bench_orders"] if row[1] is None]
    assert len(kept) == 15
    assert all(row[3] is None for row in kept), "the subject's orders are anonymised"
    assert len(state["bench_events"]) == 15, "only other people's events are left"


@pytest.mark.postgres
def test_both_strategies_agree_on_postgresql() -> None:

    with make_database_url("postgresql") as url:
        result = run(url, rows=20)
    assert result.set_based_state == result.row_by_row_state

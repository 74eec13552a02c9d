"""Issue 7: the demo, run by the real CLI against a real `prefect server start`, leaves no
identifier of any demo person in Prefect's database, in PREFECT_HOME, in the server's log
or in what the demo prints."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from datetime import date
from pathlib import Path

import phonenumbers
import pytest

from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE, Person
from emulators.oidc import synthetic_fnr
from tests.prefect_server import BIN, PrefectServer, prefect_env, running_prefect_server, stop

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

DEMO_TIMEOUT_S = 180.0
DATE_OF_BIRTH = "1985-05-17"  # the accounting emulators and the BankID broker hold it


def identifiers(person: Person) -> set[str]:
    """Every form in which the person's identifiers are held by the emulated systems, lowercased."""
    national = str(phonenumbers.parse(person.phone).national_number)
    spaced = f"{national[:3]} {national[3:5]} {national[5:]}"  # "912 34 567", as typed in PowerOffice
    values = {person.email, person.email.lower(), person.phone, national, spaced}
    values |= {person.name, person.street_address}
    return {value.lower() for value in values}


# The national id the emulated BankID broker puts in Kari's id_token: it must end nowhere.
NATIONAL_ID = synthetic_fnr(date.fromisoformat(DATE_OF_BIRTH))
ALL_IDENTIFIERS = sorted(
    set().union(*(identifiers(p) for p in (DEMO_SUBJECT, *OTHER_PEOPLE))) | {DATE_OF_BIRTH, NATIONAL_ID}
)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """A real `prefect server start` on a free port, SQLite in its own PREFECT_HOME, logging at DEBUG."""
    with running_prefect_server(
        tmp_path / "prefect-home",
        tmp_path / "prefect-server.log",
        PREFECT_SERVER_UI_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="DEBUG",
        PREFECT_LOGGING_LEVEL="DEBUG",
    ) as server:
        yield server


def _run_demo(server: PrefectServer, var_dir: Path) -> tuple[int, str, str]:
    env = prefect_env(server.home, PREFECT_API_URL=server.api_url)
    process = subprocess.Popen(
        [str(BIN / "dsar"), "demo", "--var-dir", str(var_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        stop(process)
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _hits(places: dict[str, str]) -> list[str]:
    return [
        f"{value!r} in {where}"
        for where, text in places.items()
        for value in ALL_IDENTIFIERS
        if value in text.lower()
    ]


def test_demo_leaves_no_personal_data_in_prefect(prefect_server: PrefectServer, tmp_path: Path) -> None:
    code, out, err = _run_demo(prefect_server, tmp_path / "demo")
    assert code == 0, f"dsar demo failed ({code}):\n{err}"
    documents = [Path(line) for line in out.splitlines() if line.strip()]
    assert len(documents) == 2, out
    assert all(p.suffix == ".pdf" and p.is_file() for p in documents), out
    assert "dsar demo" in err  # the summary table, which holds ids, statuses and counts only

    stop(prefect_server.process)
    database = prefect_server.home / "prefect.db"
    with closing(sqlite3.connect(database)) as conn:
        dump = "\n".join(conn.iterdump())
        flow_runs = conn.execute("select count(*) from flow_run").fetchone()[0]
    server_log = prefect_server.log_file.read_text(encoding="utf-8", errors="replace")

    places = {
        "Prefect's database (iterdump)": dump,
        "the server's log": server_log,
        "the demo's stdout": out,
        "the demo's stderr": err,
    }
    files = [path for path in sorted(prefect_server.home.rglob("*")) if path.is_file()]
    for path in files:
        places[f"PREFECT_HOME/{path.relative_to(prefect_server.home)}"] = path.read_bytes().decode(
            "utf-8", errors="replace"
        )

    # The search is not vacuous: the runs, their logs and the requests reached the server.
    assert flow_runs >= 2
    assert "access-dsar-" in dump
    assert "erasure-dsar-" in dump
    assert 'insert into "log"' in dump.lower()
    assert "/api/flow_runs" in server_log  # request lines are logged, so a leak in a URL would show
    assert database in files
    assert _hits(places) == []

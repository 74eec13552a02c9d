"""The command line as users and scripts meet it: real processes, exit codes, stdout/stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

DSAR = str(Path(sys.executable).with_name("dsar"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("DSAR_", "PREFECT_API"))}
    systems = tmp_path / "systems.yaml"
    systems.write_text(
        "systems:\n  - name: app-db\n    kind: sql\n    url: sqlite:///"
        f"{tmp_path}/app.db\n"
        f"    dataset: {Path(__file__).parents[1] / 'datasets' / 'app_db.yaml'}\n"
    )
    values.update(
        DSAR_VAR_DIR=str(tmp_path / "var"),
        DSAR_SYSTEMS_FILE=str(systems),
        DSAR_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DSAR_HASH_KEY="cli-test",
    )
    return values


def dsar(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DSAR, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def requests_in_ledger(env: dict[str, str]) -> int:
    ledger = Path(env["DSAR_VAR_DIR"]) / "ledger.db"
    if not ledger.exists():
        return 0
    with create_engine(f"sqlite:///{ledger}").connect() as conn:
        return conn.execute(text("SELECT count(*) FROM requests")).scalar_one()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("2025-01-31",), "2025-02-28"),
        (("2025-01-31", "--extended"), "2025-04-28"),
        (("2025-03-05", "--suspended-days", "3"), "2025-04-08"),
        (("2024-02-29",), "2024-04-02"),  # 29 March is Good Friday, then Easter
    ],
)
def test_deadline_prints_the_due_date(env: dict[str, str], args: tuple[str, ...], expected: str) -> None:
    result = dsar(env, "deadline", *args)
    assert (result.returncode, result.stdout) == (0, f"{expected}\n")


@pytest.mark.parametrize("bad", ["2025-02-30", "31.01.2025", "tomorrow", ""])
def test_deadline_refuses_an_impossible_date_with_exit_2(env: dict[str, str], bad: str) -> None:
    result = dsar(env, "deadline", bad)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_deadline_refuses_negative_suspension(env: dict[str, str]) -> None:
    assert dsar(env, "deadline", "2025-01-31", "--suspended-days", "-2").returncode == 2


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--type", "delete-me", "--email", "kari@example.no"), "unknown request type"),
        (("--type", "access", "--email", "not-an-address"), "e-mail address is not valid"),
        (("--type", "access", "--phone", "12"), "phone number is not valid"),
        (("--type", "access"), "at least an e-mail address or a phone number"),
        (("--type", "access", "--email", "kari@example.no", "--language", "sv"), "unsupported language"),
    ],
)
def test_submit_refuses_bad_input_and_writes_nothing(
    env: dict[str, str], args: tuple[str, ...], reason: str
) -> None:
    result = dsar(env, "submit", *args, "--no-start")
    assert result.returncode == 2
    assert reason in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "kari@example.no" not in result.stderr
    assert requests_in_ledger(env) == 0


def test_submit_registers_status_shows_it_and_a_duplicate_is_refused(env: dict[str, str]) -> None:
    first = dsar(
        env, "submit", "--type", "erasure", "--email", "Kari@Example.no", "--ticket", "ZD-7", "--no-start"
    )
    assert first.returncode == 0, first.stderr
    request_id = first.stdout.strip()
    assert request_id.startswith("dsar-")

    again = dsar(env, "submit", "--type", "erasure", "--email", "kari@example.NO", "--no-start")
    assert again.returncode == 2
    assert request_id in again.stderr

    status = dsar(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert row["id"] == request_id
    assert row["status"] == "received"
    assert row["ticket"] == "ZD-7"
    assert 28 <= row["days_left"] <= 37
    assert "kari" not in status.stdout.lower()


def test_submit_without_a_systems_file_is_bad_input_and_writes_nothing(env: dict[str, str]) -> None:
    env["DSAR_SYSTEMS_FILE"] = str(Path(env["DSAR_VAR_DIR"]) / "missing.yaml")
    result = dsar(env, "submit", "--type", "access", "--email", "kari@example.no")
    assert result.returncode == 2
    assert "systems file" in result.stderr
    assert requests_in_ledger(env) == 0


def test_run_refuses_unknown_and_finished_requests(env: dict[str, str]) -> None:
    unknown = dsar(env, "run", "dsar-000000000000")
    assert (unknown.returncode, "dsar-000000000000" in unknown.stderr) == (2, True)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--type", "rectification"), "needs the corrected values"),
        (("--type", "rectification", "--correct-email", "not-an-address"), "corrected e-mail address"),
        (("--type", "erasure", "--controller", "Bakeriet AS"), "controller"),
        (("--type", "consent"), "unknown request type"),
    ],
)
def test_submit_checks_the_details_of_the_other_rights(
    env: dict[str, str], args: tuple[str, ...], reason: str
) -> None:
    result = dsar(env, "submit", *args, "--email", "kari@example.no", "--no-start")
    assert result.returncode == 2
    assert reason in result.stderr
    assert requests_in_ledger(env) == 0


def test_submit_registers_a_rectification_and_an_objection(env: dict[str, str]) -> None:
    fixed = dsar(
        env, "submit", "--type", "rectification", "--email", "kari@example.no", "--correct-name", "Kari Berg",
        "--no-start",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    objection = dsar(
        env,
        "submit",
        "--type",
        "objection",
        "--email",
        "kari@example.no",
        "--withdraws-consent",
        "--no-start",
    )
    assert objection.returncode == 0, objection.stderr
    assert requests_in_ledger(env) == 2


def test_usage_errors_exit_2(env: dict[str, str]) -> None:
    assert dsar(env, "submit", "--email", "kari@example.no").returncode == 2  # --type is required
    assert dsar(env, "no-such-command").returncode == 2


def test_extend_and_refuse_refuse_bad_input_with_exit_2(env: dict[str, str]) -> None:
    submitted = dsar(env, "submit", "--type", "access", "--email", "kari@example.no", "--no-start")
    request_id = submitted.stdout.strip()
    unknown = dsar(env, "extend", "dsar-000000000000", "--reasons", "Eleven systems and many requests.")
    assert unknown.returncode == 2
    assert "no such request" in unknown.stderr
    terse = dsar(env, "refuse", request_id, "--reasons", "no")
    assert terse.returncode == 2
    assert "reasons" in terse.stderr
    assert "kari@example.no" not in terse.stderr + unknown.stderr


def test_extend_stores_the_letter_and_status_shows_the_new_deadline(env: dict[str, str]) -> None:
    request_id = dsar(
        env, "submit", "--type", "access", "--email", "kari@example.no", "--no-start"
    ).stdout.strip()
    before = json.loads(dsar(env, "status", "--json").stdout)[0]
    env = env | {"DSAR_SMTP_PORT": "9"}  # nobody listens: the mail stays queued, the letter is stored
    reasons = ("--reasons", "Eleven systems and many requests this month.")
    extended = dsar(env, "extend", request_id, *reasons)
    assert extended.returncode == 0, extended.stderr
    assert extended.stdout.strip().endswith(".pdf.enc")
    assert Path(extended.stdout.strip()).exists()
    after = json.loads(dsar(env, "status", "--json").stdout)[0]
    assert after["extended"] is True
    assert after["due"] > before["due"]
    assert (
        dsar(
            env, "extend", request_id, "--reasons", "Eleven systems and many requests this month."
        ).returncode
        == 2
    )

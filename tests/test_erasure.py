"""Erasure end to end (GDPR Art. 17 and 19) with every emulated system, a real SMTP server on
loopback and the ledger on SQLite and PostgreSQL: the plan and its approval, what is erased and
what is kept (bookkeeping, legal holds), the recipients' notices, a crash half-way, and the
requests we only forward to a customer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.settings import PREFECT_API_URL
from sqlalchemy import select
from typer.testing import CliRunner

from dsar import holds, intake
from dsar.calendar import OSLO
from dsar.cli import app as dsar_app
from dsar.ledger import repository as repo
from dsar.ledger.models import Document, Event, RequestStatus, RetainedData, SystemStatus
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.internal_db import newsletter_subscriptions
from emulators.operator import Operator
from emulators.stack import EmulatorStack, emulator_stack
from flows.erasure import erasure_request
from tests.conftest import flow_settings
from tests.databases import make_database_url
from tests.documents_helpers import stored_pdf_text
from tests.identity_helpers import confirm_identity

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

# Every recipient in config/systems.example.yaml (Art. 4(9): processors count) and its contact.
RECIPIENTS = {
    "HubSpot Ireland Limited": "privacy@hubspot.example",
    "Zendesk, Inc.": "privacy@zendesk.example",
    "LINK Mobility AS": "privacy@linkmobility.example",
    "PowerOffice AS": "personvern@poweroffice.example",
    "Tripletex AS": "personvern@tripletex.example",
    "24SevenOffice Norway AS": "privacy@24sevenoffice.example",
}
SEARCHABLE = (
    "hubspot-crm",
    "zendesk-support",
    "app-db",
    "sms-log",
    "poweroffice-go",
    "tripletex",
    "twentyfour",
)
OPERATOR = "Ingrid Operatør"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with make_database_url(request.param) as url:
        yield url


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path / "systems") as started:
        yield started


@pytest.fixture
def rt(stack: EmulatorStack, ledger_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = flow_settings(
        tmp_path,
        ledger_url,
        stack.systems_file,
        stack.mailbox.port,
        processor_language="en",
        erasure_approval="operator",
    )
    runtime = Runtime.from_settings(settings)
    with using(runtime):
        yield runtime
    runtime.close()


def submit(rt: Runtime, **details: Any) -> str:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    request_id = intake.register(
        rt.ledger, request_type="erasure", subject=subject, language="en", details=details or None
    ).request_id
    return confirm_identity(rt.ledger, request_id)


def operator_answer(key: str) -> dict[str, object]:
    if key == "approve-erasure":
        return {"decision": "approve", "operator": OPERATOR, "reason": "Plan checked against the case."}
    if key.startswith("erase-"):
        return {"outcome": "erased", "operator": OPERATOR, "note": "LINK confirmed by letter."}
    return {"outcome": "found", "operator": OPERATOR, "records": 2, "note": "LINK answered by e-mail."}


def fresh_lookups(rt: Runtime) -> dict[str, int]:
    """Look Kari up again in every system with an API, as a new request would."""
    found = {}
    for name in SEARCHABLE:
        client = rt.system(name)
        try:
            found[name] = client.lookup(DEMO_SUBJECT).total
        finally:
            client.close()
    return found


def events(rt: Runtime, request_id: str, kind: str) -> list[dict[str, Any]]:
    with rt.ledger.session() as session:
        stmt = (
            select(Event.data).where(Event.request_id == request_id, Event.kind == kind).order_by(Event.seq)
        )
        return list(session.scalars(stmt))


def art19_mails(stack: EmulatorStack) -> dict[str, int]:
    told: dict[str, int] = {}
    for message in stack.mailbox.messages:
        if ".art19-erasure." in str(message["Message-ID"]):
            told[str(message["To"])] = told.get(str(message["To"]), 0) + 1
    return told


def test_an_approved_plan_erases_everything_erasable_keeps_the_books_and_tells_every_recipient_once(
    rt: Runtime, stack: EmulatorStack
) -> None:
    invoices_before = stack.states["poweroffice-go"].snapshot()["counts"]["invoices"]
    request_id = submit(rt)
    with Operator(operator_answer, poll_s=0.3) as operator:
        stored = erasure_request(request_id)
    assert stored is not None
    assert operator.answered[0] == "look-up-link-mobility"
    assert "approve-erasure" in operator.answered  # nothing was erased before a named person agreed
    approved = events(rt, request_id, "erasure.approved")
    assert [a["operator"] for a in approved] == [OPERATOR]
    plan = events(rt, request_id, "erasure.planned")[-1]["systems"]
    assert {c["category"]: c["action"] for c in plan["poweroffice-go"]["categories"]}["invoice"] == "retain"

    assert fresh_lookups(rt) == dict.fromkeys(SEARCHABLE, 0)  # gone everywhere, by a new search
    assert stack.states["poweroffice-go"].snapshot()["counts"]["invoices"] == invoices_before  # books kept

    until_primary = date(datetime.now(OSLO).year + 5, 12, 31)
    with rt.ledger.session() as session:
        kept = {(k.system, k.category): k for k in session.scalars(select(RetainedData))}
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        assert all(row.status.is_definite for row in request.systems)
    assert kept[("poweroffice-go", "invoice")].until == until_primary
    assert "bokføringsloven § 13" in kept[("poweroffice-go", "invoice")].basis
    assert kept[("tripletex", "order")].until == date(datetime.now(OSLO).year + 4, 6, 30)  # secondary
    assert all(k.status == "kept" and k.hold_id is None for k in kept.values())

    assert art19_mails(stack) == {contact: 1 for contact in RECIPIENTS.values()}
    to_hubspot = next(m for m in stack.mailbox.to(RECIPIENTS["HubSpot Ireland Limited"]))
    assert request_id in str(to_hubspot["Subject"])
    assert DEMO_SUBJECT.email.lower() in to_hubspot.get_content().lower()  # they must know whom

    certificate = stored_pdf_text(rt.ledger, stored)
    flat = " ".join(certificate.split())
    assert "bokføringsloven § 13" in flat
    assert f"Kept until: {until_primary.day} December {until_primary.year}" in flat
    assert "Recipients we have told (Article 19)" in flat
    for vendor, contact in RECIPIENTS.items():
        assert f"{vendor} (" in flat
        assert contact in flat
    assert DEMO_SUBJECT.email.lower() not in certificate.lower()


def test_data_that_is_back_at_the_re_check_is_erased_again_before_anything_is_certified(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = submit(rt)

    def reimport_then_answer(key: str) -> dict[str, object]:
        if key == "erase-link-mobility":  # erasure ran everywhere else; an old list is imported again
            with stack.app_db.begin() as conn:
                conn.execute(
                    newsletter_subscriptions.insert().values(
                        email=DEMO_SUBJECT.email,
                        subscribed_at=datetime(2026, 1, 5),
                        confirmed=True,
                        source="import",
                    )
                )
        return operator_answer(key)

    with Operator(reimport_then_answer, poll_s=0.3):
        stored = erasure_request(request_id)
    assert stored is not None
    failed = [e for e in events(rt, request_id, "system.failed") if e["system"] == "app-db"]
    assert failed  # the re-check (and its retry) found the re-imported row ...
    assert all(e["step"] == "verify" and "re-check still finds 1 records" in e["error"] for e in failed)
    rounds = [e["counts"] for e in events(rt, request_id, "system.erased") if e["system"] == "app-db"]
    assert len(rounds) == 2
    assert rounds[1] == {"marketing": 1}  # only the re-imported row the second time
    assert fresh_lookups(rt)["app-db"] == 0
    with rt.ledger.session() as session:
        row = {r.system: r for r in repo.get_request(session, request_id).systems}["app-db"]
    # the certificate's counts are both rounds together: the first round's are not forgotten
    assert row.erased_counts["marketing"] == rounds[0].get("marketing", 0) + 1
    assert row.erased_counts["customer"] == rounds[0]["customer"]


def test_a_dry_run_shows_the_plan_and_erases_nothing(rt: Runtime, stack: EmulatorStack) -> None:
    request_id = submit(rt)
    with Operator(operator_answer, poll_s=0.3) as operator:
        assert erasure_request(request_id, dry_run=True) is None
    assert "approve-erasure" not in operator.answered
    assert events(rt, request_id, "erasure.dry_run")
    assert events(rt, request_id, "system.erased") == []
    assert fresh_lookups(rt)["hubspot-crm"] > 0
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status.is_open


def test_the_erasure_plan_command_is_a_dry_run_that_prints_counts_not_values(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = submit(rt)
    env: dict[str, str | None] = {
        # The CLI sets Prefect defaults in its process; in-process here, they are undone after it.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": None,
        "DSAR_VAR_DIR": str(rt.settings.var_dir),
        "DSAR_LEDGER_URL": rt.settings.ledger_url,
        "DSAR_ENCRYPTION_KEY": rt.settings.secret("encryption_key"),
        "DSAR_HASH_KEY": rt.settings.secret("hash_key"),
        "DSAR_SYSTEMS_FILE": str(stack.systems_file),
        "DSAR_SMTP_PORT": str(stack.mailbox.port),
        "DSAR_OPERATOR_POLL_S": "1",
    }
    with Operator(operator_answer, poll_s=0.3):
        result = CliRunner().invoke(dsar_app, ["erasure-plan", request_id], env=env)
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["systems"]
    invoice = next(c for c in plan["poweroffice-go"]["categories"] if c["category"] == "invoice")
    assert (invoice["action"], invoice["until"]) == ("retain", f"{datetime.now(OSLO).year + 5}-12-31")
    assert DEMO_SUBJECT.email.lower() not in result.stdout.lower()
    assert events(rt, request_id, "system.erased") == []
    assert fresh_lookups(rt)["hubspot-crm"] > 0


def test_a_rejected_plan_erases_nothing_and_waits_for_an_operator(rt: Runtime, stack: EmulatorStack) -> None:
    request_id = submit(rt)

    def reject(key: str) -> dict[str, object]:
        if key == "approve-erasure":
            return {
                "decision": "reject",
                "operator": OPERATOR,
                "reason": "Disputed invoice: check with legal.",
            }
        return operator_answer(key)

    with Operator(reject, poll_s=0.3):
        assert erasure_request(request_id) is None
    assert events(rt, request_id, "system.erased") == []
    assert fresh_lookups(rt)["app-db"] > 0
    assert [e["operator"] for e in events(rt, request_id, "erasure.rejected")] == [OPERATOR]
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.AWAITING_OPERATOR, "erasure_rejected")


def test_a_legal_hold_keeps_that_system_whole_and_the_certificate_says_until_when(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = submit(rt)
    with rt.ledger.session() as session:
        hold = holds.place_hold(
            session,
            request_id=request_id,
            system="app-db",
            reason="Claim 2026-117 (disputed delivery)",
            operator=OPERATOR,
            known=rt.system_names,
        )
        hold_id = hold.id
    with Operator(operator_answer, poll_s=0.3):
        stored = erasure_request(request_id)
    assert stored is not None
    found = fresh_lookups(rt)
    assert found["app-db"] > 0  # held: nothing erased there
    assert found["hubspot-crm"] == 0
    with rt.ledger.session() as session:
        rows = [k for k in session.scalars(select(RetainedData)) if k.system == "app-db"]
        row = {r.system: r for r in repo.get_request(session, request_id).systems}["app-db"]
        assert row.status is SystemStatus.RETAINED
    assert rows
    assert all(r.hold_id == hold_id and r.until is None for r in rows)
    assert all("Art. 17(3)(e)" in r.basis for r in rows)
    flat = " ".join(stored_pdf_text(rt.ledger, stored).split())
    assert "until the legal hold is released" in flat
    assert "Claim 2026-117" in flat
    assert "privacy@hubspot.example" in flat  # the others were told; app-db is ours (no recipient)


def test_a_request_about_a_customers_data_is_forwarded_to_the_customer_and_nothing_is_erased(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = submit(rt, controller={"name": "Bakeriet Fjord AS", "email": "personvern@bakeriet.example"})
    letter = erasure_request(request_id)
    assert letter is not None
    assert fresh_lookups(rt)["hubspot-crm"] > 0
    assert events(rt, request_id, "request.forwarded_to_controller")
    assert events(rt, request_id, "system.erased") == []
    mails = stack.mailbox.to("personvern@bakeriet.example")
    assert len(mails) == 1
    assert request_id in mails[0].get_content()
    assert art19_mails(stack) == {}
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.COMPLETED, "forwarded")


def test_a_system_that_keeps_data_no_rule_explains_is_not_certified(
    stack: EmulatorStack, ledger_url: str, tmp_path: Path
) -> None:
    systems = yaml.safe_load(stack.systems_file.read_text(encoding="utf-8"))
    for entry in systems["systems"]:
        if entry["name"] == "poweroffice-go":
            entry["register"]["retention_rules"] = []  # the register forgot the bookkeeping rule
    stack.systems_file.write_text(yaml.safe_dump(systems, allow_unicode=True), encoding="utf-8")
    settings = flow_settings(
        tmp_path, ledger_url, stack.systems_file, stack.mailbox.port, processor_language="en"
    )
    runtime = Runtime.from_settings(settings)
    with using(runtime), Operator(operator_answer, poll_s=0.3):
        request_id = submit(runtime)
        with pytest.raises(Exception, match="no definite answer from poweroffice-go"):
            erasure_request(request_id)
    with runtime.ledger.session() as session:
        request = repo.get_request(session, request_id)
        row = {r.system: r for r in request.systems}["poweroffice-go"]
        assert request.status is RequestStatus.INCOMPLETE
        assert row.status is SystemStatus.FAILED
        assert row.error == "poweroffice-go: kept invoice without a retention rule in the register"
        assert not session.scalars(select(Document).where(Document.request_id == request_id)).first()
    runtime.close()


def test_a_crash_between_two_systems_then_a_rerun_gives_one_certificate_and_no_second_notice(
    rt: Runtime, stack: EmulatorStack, tmp_path: Path
) -> None:
    """SIGKILL the process running the erasure after some systems are erased and before others."""
    request_id = submit(rt)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "DSAR_VAR_DIR": str(rt.settings.var_dir),
        "DSAR_ENCRYPTION_KEY": rt.settings.secret("encryption_key"),
        "DSAR_HASH_KEY": rt.settings.secret("hash_key"),
        "DSAR_LEDGER_URL": rt.settings.ledger_url,
        "DSAR_SYSTEMS_FILE": str(stack.systems_file),
        "DSAR_SMTP_PORT": str(stack.mailbox.port),
        "DSAR_ERASURE_APPROVAL": "operator",
        "DSAR_OPERATOR_POLL_S": "1",
        "DSAR_HTTP_TIMEOUT_S": "120",
        "DSAR_PROCESSOR_LANGUAGE": "en",
    }
    script = (
        "import sys\n"
        "from dsar.runtime import Runtime, using\n"
        "from dsar.settings import Settings\n"
        "from flows.erasure import erasure_request\n"
        "with using(Runtime.from_settings(Settings())):\n"
        "    erasure_request(sys.argv[1])\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, request_id],
        env=env,
        cwd=Path(__file__).parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    zendesk = stack.states["zendesk-support"]
    try:

        def answer(key: str) -> dict[str, object]:
            if key == "approve-erasure":  # the plan is approved; Zendesk will hang on its first erase call
                zendesk.faults.update({"slow_next": 1, "slow_s": 90})
            return operator_answer(key)

        with Operator(answer, poll_s=0.3):
            _wait_for(lambda: len(events(rt, request_id, "system.erased")) >= 3, worker, timeout_s=240)
        erased_before = {e["system"] for e in events(rt, request_id, "system.erased")}
        assert "zendesk-support" not in erased_before
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    zendesk.faults.update({"slow_next": 0})

    with Operator(operator_answer, poll_s=0.3) as operator:
        stored = erasure_request(request_id)
    assert stored is not None
    assert "approve-erasure" not in operator.answered  # approved once, before the crash
    erased = [e["system"] for e in events(rt, request_id, "system.erased")]
    assert sorted(erased) == sorted(set(erased))  # no system erased twice
    assert fresh_lookups(rt) == dict.fromkeys(SEARCHABLE, 0)
    assert art19_mails(stack) == {contact: 1 for contact in RECIPIENTS.values()}
    with rt.ledger.session() as session:
        certificates = session.scalars(
            select(Document).where(Document.request_id == request_id, Document.kind == "deletion_certificate")
        ).all()
        assert len(certificates) == 1
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED


def _wait_for(condition: Any, worker: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if worker.poll() is not None:
            raise AssertionError(f"the erasure process ended early with {worker.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError("the erasure did not reach the point of the crash in time")
        time.sleep(0.2)

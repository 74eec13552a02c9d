"""The right to data portability (GDPR Art. 20) end to end: emulated systems over HTTP and SQL,
the ledger on SQLite and PostgreSQL, the export zip read back and compared with the systems."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dsar import intake
from dsar.dispatch import flow_for
from dsar.export import LEFT_OUT_BASIS, build_export, read_export
from dsar.ledger import repository as repo
from dsar.ledger.chain import verify_chain
from dsar.ledger.models import Document, Event, RequestStatus, SystemStatus
from dsar.runtime import Runtime, using
from dsar.systems import load_specs
from emulators.demo_data import DEMO_SUBJECT
from emulators.operator import Operator
from emulators.server import RunningServer, serve_in_thread
from emulators.stack import EXAMPLE_SYSTEMS, EmulatorStack, emulator_stack
from emulators.zendesk import ZendeskState, create_app
from flows.portability import portability_request
from integrations.base import Record
from tasks.documents import PORTABILITY_EXPORT
from tests.conftest import flow_settings
from tests.databases import make_database_url
from tests.documents_helpers import stored_bytes
from tests.identity_helpers import confirm_identity

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

SYSTEMS = ("hubspot-crm", "app-db", "poweroffice-go")
# What the example's processing register declares portable (Art. 20(1)), per system.
PORTABLE = {
    spec.name: spec.register.portable_categories for spec in load_specs(EXAMPLE_SYSTEMS) if spec.register
}
LEFT_OUT_HEADING = {
    "nb": "Ikke tatt med (personvernforordningen artikkel 20 nr. 1)",
    "en": "Not included (GDPR Article 20(1))",
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path / "systems", only=SYSTEMS) as started:
        yield started


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with make_database_url(request.param) as url:
        yield url


def settings(stack: EmulatorStack, ledger_url: str, tmp_path: Path, **extra: Any) -> Any:
    return flow_settings(tmp_path, ledger_url, stack.systems_file, stack.mailbox.port, **extra)


@pytest.fixture
def rt(stack: EmulatorStack, ledger_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(settings(stack, ledger_url, tmp_path))
    with using(runtime):
        yield runtime
    runtime.close()


def submit(rt: Runtime, language: str = "nb", ticket_ref: str | None = None) -> str:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    registered = intake.register(
        rt.ledger, request_type="portability", subject=subject, language=language, ticket_ref=ticket_ref
    )
    return confirm_identity(rt.ledger, registered.request_id)


def direct_export(rt: Runtime, request_id: str, system: str) -> dict[str, dict[str, Record]]:
    """What the system holds on the subject, asked through its client: category -> id -> record."""
    with rt.ledger.session() as session:
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=request_id)
    client = rt.system(system)
    try:
        records = client.export(subject).records
    finally:
        client.close()
    held: dict[str, dict[str, Record]] = {}
    for record in records:
        held.setdefault(record.category, {})[record.record_id] = record
    return held


def zip_entries(zip_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def documents(rt: Runtime, request_id: str) -> list[Document]:
    with rt.ledger.session() as session:
        query = select(Document).where(Document.request_id == request_id).order_by(Document.id)
        return list(session.scalars(query))


def test_the_export_holds_exactly_what_article_20_covers(rt: Runtime) -> None:
    request_id = submit(rt, language="nb")
    stored = portability_request(request_id)
    assert stored is not None
    assert stored.endswith(".zip.enc")
    zip_bytes = stored_bytes(rt.ledger, stored)
    export = read_export(zip_bytes)  # checks every file against the manifest's SHA-256
    entries = zip_entries(zip_bytes)
    manifest = json.loads(entries["manifest.json"])
    for entry in [*manifest["files"], manifest["readme"]]:
        assert hashlib.sha256(entries[entry["path"]]).hexdigest() == entry["sha256"]

    assert set(export) == set(SYSTEMS)
    left_out: dict[str, set[str]] = {}
    for system in SYSTEMS:
        held = direct_export(rt, request_id, system)
        portable = set(PORTABLE[system])
        assert set(export[system]) == set(held) & portable  # every portable category found, no other
        for category, records in export[system].items():
            assert {r.record_id: r for r in records} == held[category]  # value for value, type for type
        if set(held) - portable:
            left_out[system] = set(held) - portable
    assert {c for c in export["poweroffice-go"]} == {"customer", "contact_person"}
    assert left_out["poweroffice-go"] == {"invoice"}  # the bookkeeping records are ours (6(1)(c))
    assert "security_log" not in export["app-db"]
    assert left_out["app-db"] == {"security_log"}  # legitimate interest: not portable
    assert "hubspot-crm" not in left_out  # consent and contract: all of it is portable
    assert {(e["system"], e["category"]) for e in manifest["left_out"]} == {
        (system, category) for system, categories in left_out.items() for category in categories
    }
    assert {e["basis"] for e in manifest["left_out"]} == {LEFT_OUT_BASIS}

    readme = entries["README.txt"].decode("utf-8")
    assert readme.startswith("Dine personopplysninger i maskinlesbart format")
    assert LEFT_OUT_HEADING["nb"] in readme
    words = " ".join(readme.split())
    assert "ikke gitt av deg / ikke behandlet på grunnlag av samtykke eller avtale (art. 20 nr. 1)" in words
    assert "- app-db: security_log" in readme
    assert "- poweroffice-go: invoice" in readme
    assert LEFT_OUT_HEADING["en"] not in readme

    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        assert request.checkpoint == "exported"
        assert {r.status for r in request.systems} == {SystemStatus.FOUND}
        assert all(r.payload_ciphertext is not None for r in request.systems)  # collected into the ledger
        assert verify_chain(session, request_id).ok
    assert [d.kind for d in documents(rt, request_id)] == [PORTABILITY_EXPORT]  # no access report


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_dispatch_runs_the_flow_and_a_finished_request_is_not_run_again(rt: Runtime) -> None:
    request_id = submit(rt, language="en")
    assert flow_for("portability") is portability_request
    stored = flow_for("portability")(request_id)
    assert stored is not None
    readme = zip_entries(stored_bytes(rt.ledger, stored))["README.txt"].decode("utf-8")
    assert LEFT_OUT_HEADING["en"] in readme
    words = " ".join(readme.split())
    assert "not provided by you / not processed on consent or contract (Art. 20(1))" in words
    with pytest.raises(Exception, match="already completed"):
        portability_request(request_id)
    assert len(documents(rt, request_id)) == 1


def test_a_failing_system_leaves_the_request_incomplete_without_an_export(
    rt: Runtime, stack: EmulatorStack
) -> None:
    stack.hubspot.set_faults({"server_error_next": -1})
    request_id = submit(rt)
    with pytest.raises(Exception, match="no definite answer from hubspot-crm"):
        portability_request(request_id)
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        rows = {r.system: r for r in request.systems}
        assert request.status is RequestStatus.INCOMPLETE
        assert rows["hubspot-crm"].status is SystemStatus.FAILED
        assert rows["app-db"].status is SystemStatus.FOUND
    assert documents(rt, request_id) == []  # no export that silently misses a system

    stack.hubspot.set_faults({"server_error_next": 0})
    stored = portability_request(request_id)
    assert stored is not None
    export = read_export(stored_bytes(rt.ledger, stored))
    assert export["hubspot-crm"]
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_no_personal_data_reaches_prefect(rt: Runtime, prefect_harness: str) -> None:
    portability_request(submit(rt))
    needles = [
        v.lower()
        for v in (
            DEMO_SUBJECT.email,
            DEMO_SUBJECT.phone,
            "91234567",
            DEMO_SUBJECT.name,
            "Nordmann",
            "Storgata 12",
        )
    ]
    dump = "\n".join(sqlite3.connect(prefect_harness.split(":///", 1)[1]).iterdump()).lower()
    assert "portability-dsar-" in dump  # the run is there, named by request id only
    assert not [n for n in needles if n in dump]


# --- review and the ticket ---------------------------------------------------------------------


@pytest.fixture
def zendesk() -> Iterator[tuple[RunningServer, ZendeskState]]:
    state = ZendeskState()
    with serve_in_thread(create_app(state)) as server:
        yield server, state


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_reviewed_redacted_and_attached_to_the_ticket(
    stack: EmulatorStack, ledger_url: str, tmp_path: Path, zendesk: tuple[RunningServer, ZendeskState]
) -> None:
    server, state = zendesk
    ticket = state.add_ticket(state.agent_id, "Dataportabilitet", [(state.agent_id, "Kunden ber om data")])
    zendesk_settings = settings(
        stack,
        ledger_url,
        tmp_path,
        ticketing_zendesk_url=server.url,
        ticketing_zendesk_email=state.agent_email,
        ticketing_zendesk_token=state.api_token,
    )
    rt = Runtime.from_settings(zendesk_settings)
    plan: list[Callable[[str], dict[str, object]]] = []

    def answer(key: str) -> dict[str, object]:
        return plan.pop(0)(key)

    with using(rt), Operator(answer, poll_s=0.3) as operator:
        request_id = submit(rt, language="en", ticket_ref=f"zendesk:{ticket}")
        contact = next(iter(direct_export(rt, request_id, "hubspot-crm")["contact"].values()))
        field = next(name for name, value in contact.fields.items() if value not in (None, ""))
        hidden = f"hubspot-crm/{contact.record_id}/{field}"

        plan.append(lambda key: {"decision": "hold", "operator": "Ingrid Operatør", "note": "wait"})
        held = portability_request(request_id)
        with rt.ledger.session() as session:
            assert repo.get_request(session, request_id).status is RequestStatus.AWAITING_OPERATOR
        assert not any(c["attachments"] for c in state.comments[ticket])  # nothing sent while held

        plan.append(lambda key: {"decision": "redact", "operator": "Ingrid Operatør", "redactions": [hidden]})
        plan.append(lambda key: {"decision": "send", "operator": "Ingrid Operatør", "note": "checked"})
        sent = portability_request(request_id)  # resumed: asks again, redacts, then sends
    rt.close()

    assert operator.answered == ["review-0", "review-0", "review-1"]
    versions = documents(rt, request_id)
    assert [d.path for d in versions] == [held, sent]  # the held export was kept, not made again
    assert held is not None
    assert sent is not None
    assert held != sent
    redacted = read_export(stored_bytes(rt.ledger, sent))["hubspot-crm"]["contact"]
    assert field not in next(r for r in redacted if r.record_id == contact.record_id).fields
    original = read_export(stored_bytes(rt.ledger, held))["hubspot-crm"]["contact"]
    assert field in next(r for r in original if r.record_id == contact.record_id).fields

    (note,) = [c for c in state.comments[ticket] if c["attachments"]]
    assert not note["public"]
    assert request_id in note["body"]
    assert "GDPR Art. 20" in note["body"]
    assert DEMO_SUBJECT.email.lower() not in note["body"].lower()
    (attachment,) = note["attachments"]
    assert state.attachment(attachment["id"]) == stored_bytes(rt.ledger, sent)
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED
        kinds = list(session.scalars(select(Event.kind).where(Event.request_id == request_id)))
    assert kinds.count("ticket.portability_export_attached") == 1


# --- the export builder's Art. 20(1) part, without flows -------------------------------------------


def test_left_out_is_optional_and_named_in_both_languages() -> None:
    moment = datetime(2026, 11, 30, 13, 5, tzinfo=UTC)
    sections = [("crm", [Record("contact", "1", {"name": "Åse"})])]
    plain = build_export("R-1", sections, generated_at=moment, language="en")
    assert "left_out" not in json.loads(zip_entries(plain)["manifest.json"])  # existing callers: as before
    assert b"Not included" not in zip_entries(plain)["README.txt"]
    for language, heading in LEFT_OUT_HEADING.items():
        limited = build_export(
            "R-1",
            sections,
            generated_at=moment,
            language=language,
            left_out={"crm": ["deal", "deal", "email"], "quiet-system": []},
        )
        entries = zip_entries(limited)
        readme = entries["README.txt"].decode("utf-8")
        assert heading in readme
        assert "- crm: deal, email\r\n" in readme
        assert "quiet-system" not in readme
        listed = json.loads(entries["manifest.json"])["left_out"]
        assert [(e["system"], e["category"]) for e in listed] == [("crm", "deal"), ("crm", "email")]
        assert read_export(limited) == read_export(plain)  # the data files are the same

"""Requests end to end under Prefect: emulated HubSpot over real HTTP, a real SQL database,
the ledger on SQLite and PostgreSQL, PDFs read back."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pypdf
import pytest
import sqlalchemy as sa
from prefect.artifacts import Artifact

from dsar import intake, runtime
from dsar.export import read_export
from dsar.ledger import repository as repo
from dsar.ledger.chain import verify_chain
from dsar.ledger.models import Event, RequestStatus, SystemStatus
from dsar.runtime import Runtime, using
from dsar.signing import load_trust_roots, verify_pdf
from emulators.demo_data import DEMO_SUBJECT
from emulators.internal_db import OTHER_PEOPLE
from emulators.stack import EmulatorStack, emulator_stack
from flows.access import access_request
from flows.erasure import erasure_request
from tests.conftest import flow_settings
from tests.databases import make_database_url
from tests.documents_helpers import stored_bytes, stored_pdf_text
from tests.identity_helpers import confirm_identity

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

# Values seeded for Kari: they must reach her access report and leave every system on erasure.
KARI_VALUES = ("Storgata 12", "Ringte om faktura 10023", "Fjordlys Pluss - Nordmann", "+4791234567")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path / "systems", only=("hubspot-crm", "app-db")) as started:
        yield started


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Flows run on SQLite and PostgreSQL; the ledger's own tests add MariaDB."""
    with make_database_url(request.param) as url:
        yield url


@pytest.fixture
def rt(stack: EmulatorStack, ledger_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = flow_settings(tmp_path, ledger_url, stack.systems_file, stack.mailbox.port)
    runtime = Runtime.from_settings(settings)
    with using(runtime):
        yield runtime
    runtime.close()


def submit(rt: Runtime, request_type: str, language: str = "nb") -> str:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    registered = intake.register(rt.ledger, request_type=request_type, subject=subject, language=language)
    return confirm_identity(rt.ledger, registered.request_id)


def attachments(pdf: bytes) -> dict[str, bytes]:
    return {name: data[0] for name, data in pypdf.PdfReader(io.BytesIO(pdf)).attachments.items()}


def pdf_text(path: str) -> str:
    return stored_pdf_text(runtime.current().ledger, path)


def test_access_request_reports_every_seeded_record(rt: Runtime) -> None:
    request_id = submit(rt, "access", language="en")
    stored = access_request(request_id)
    assert stored is not None
    text = pdf_text(stored)
    for value in (*KARI_VALUES, "Kari.Nordmann@Example.no", request_id):
        assert value in text
    assert "Ola Nordmann" not in text
    # The portability export rides inside the PDF and is kept on its own; both read back the same.
    attached = attachments(stored_bytes(rt.ledger, stored))
    export = read_export(attached[f"portability-export-{request_id}.zip"])
    assert set(export) == {"app-db", "hubspot-crm"}
    assert sum(len(records) for records in export["hubspot-crm"].values()) == 7
    values = [str(v) for records in export["app-db"].values() for r in records for v in r.fields.values()]
    assert any("Storgata 12" in v for v in values)
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        assert {r.system: r.status for r in request.systems} == {
            "app-db": SystemStatus.FOUND,
            "hubspot-crm": SystemStatus.FOUND,
        }
        assert {r.system: r.counts for r in request.systems}["hubspot-crm"] == {
            "contact": 1,
            "note": 3,
            "email": 2,
            "deal": 1,
        }
        assert verify_chain(session, request_id).ok
    summary = Artifact.get(f"{request_id}-summary")  # what the operator sees in the Prefect UI
    assert summary is not None
    assert "| hubspot-crm | hubspot | found | contact: 1, deal: 1, email: 2, note: 3 |" in str(summary.data)
    assert "Nordmann" not in str(summary.data)


def test_erasure_leaves_nothing_behind_and_certifies_it(rt: Runtime, stack: EmulatorStack) -> None:
    request_id = submit(rt, "erasure")
    stored = erasure_request(request_id)
    assert stored is not None
    certificate = pdf_text(stored)
    signed = stored_bytes(rt.ledger, stored)
    verdict = verify_pdf(signed, trust_roots=load_trust_roots(rt.settings))
    assert (verdict.intact, verdict.trusted) == (True, True)  # signed by the controller's key
    changed = bytearray(signed)
    changed[len(signed) // 3] ^= 0x01
    assert not verify_pdf(bytes(changed), trust_roots=load_trust_roots(rt.settings)).intact

    crm = repr([o.properties for store in stack.hubspot.objects.values() for o in store.values()])
    assert "Ola Nordmann" in crm  # the others are still there
    for value in (*KARI_VALUES, "kari.nordmann@example.no"):
        assert value not in crm
    with stack.app_db.connect() as conn:
        emails = conn.execute(sa.text("SELECT email FROM customers")).scalars().all()
        addresses = conn.execute(sa.text("SELECT shipping_address FROM orders")).scalars().all()
    assert DEMO_SUBJECT.email not in emails
    assert {p.email for p in OTHER_PEOPLE} <= set(emails)  # nobody else was touched
    assert not [a for a in addresses if a and "Storgata 12" in a]

    for value in (*KARI_VALUES, "kari.nordmann@example.no", "Kari.Nordmann"):
        assert value not in certificate
    assert "Slettet" in certificate
    assert "Ja" in certificate  # verified by a new search
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        assert all(r.status is SystemStatus.ERASED and r.verified_at for r in request.systems)
        assert verify_chain(session, request_id).ok
        events = session.query(Event).filter_by(request_id=request_id).order_by(Event.seq).all()
    created = next(e for e in events if e.kind == "document.created")
    attested = events[created.seq - 2]  # the chain as it stood when the certificate was signed off
    assert attested.hash in certificate.replace("\n", "")


def test_a_system_failing_for_good_leaves_the_request_incomplete_and_a_rerun_finishes_it(
    rt: Runtime, stack: EmulatorStack
) -> None:
    stack.hubspot.set_faults({"server_error_next": -1})
    request_id = submit(rt, "access")
    with pytest.raises(Exception, match="no definite answer from hubspot-crm"):
        access_request(request_id)
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        rows = {r.system: r for r in request.systems}
        assert request.status is RequestStatus.INCOMPLETE
        assert rows["hubspot-crm"].status is SystemStatus.FAILED
        assert "HTTP 500" in (rows["hubspot-crm"].error or "")
        assert rows["app-db"].status is SystemStatus.FOUND
        assert not session.query(repo.Document).filter_by(request_id=request_id).count()

    stack.hubspot.set_faults({"server_error_next": 0})
    requests_before = stack.hubspot.request_count
    text = pdf_text(access_request(request_id))  # resumes: app-db is not asked again
    assert "Ringte om faktura 10023" in text
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED
    assert stack.hubspot.request_count > requests_before


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_no_personal_data_reaches_prefect(rt: Runtime, prefect_harness: str) -> None:
    access_request(submit(rt, "access"))
    erasure_request(submit(rt, "erasure"))
    needles = [
        v.lower()
        for v in (
            DEMO_SUBJECT.email,
            DEMO_SUBJECT.phone,
            "91234567",
            DEMO_SUBJECT.name,
            "Nordmann",
            "Storgata 12",
            "Ringte om faktura",
        )
    ]
    database = prefect_harness.split(":///", 1)[1]
    dump = "\n".join(sqlite3.connect(database).iterdump()).lower()
    assert "access-dsar-" in dump  # the runs are there, named by request id only
    assert not [n for n in needles if n in dump]
    home = Path(__import__("os").environ["PREFECT_HOME"])
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file() and p.suffix != ".db").lower()
    assert not [n for n in needles if n.encode() in stored]


def test_erasure_erases_nothing_until_every_system_has_answered(rt: Runtime, stack: EmulatorStack) -> None:
    stack.hubspot.set_faults({"server_error_next": -1})
    request_id = submit(rt, "erasure")
    with pytest.raises(Exception, match="no definite answer from hubspot-crm"):
        erasure_request(request_id)
    with stack.app_db.connect() as conn:
        emails = conn.execute(sa.text("SELECT lower(email) FROM customers")).scalars().all()
    assert DEMO_SUBJECT.email.lower() in emails  # the plan was incomplete: app-db untouched

    stack.hubspot.set_faults({"server_error_next": 0})
    pdf_text(erasure_request(request_id))
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        erased_events = [
            e for e in session.query(Event).filter_by(request_id=request_id) if e.kind == "system.erased"
        ]
    assert sorted(e.data["system"] for e in erased_events) == ["app-db", "hubspot-crm"]  # each exactly once


def test_a_finished_request_is_not_run_again(rt: Runtime) -> None:
    request_id = submit(rt, "access")
    access_request(request_id)
    with pytest.raises(Exception, match="already completed"):
        access_request(request_id)
    with pytest.raises(Exception, match="has type access, not erasure"):
        erasure_request(request_id)


def test_an_access_request_about_a_customers_data_goes_to_the_customer_and_collects_nothing(
    rt: Runtime, stack: EmulatorStack
) -> None:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    details = intake.build_details(
        controller="Bakeriet Fjord AS", controller_email="Personvern@Bakeriet.example"
    )
    request_id = intake.register(
        rt.ledger, request_type="access", subject=subject, details=details
    ).request_id
    letter = access_request(request_id)  # no identity check: the customer verifies its own data subject
    assert letter is not None
    assert "Bakeriet Fjord AS" in pdf_text(letter)
    [mail] = stack.mailbox.to("personvern@bakeriet.example")
    assert request_id in mail.get_content()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.COMPLETED, "forwarded")
        assert all(row.payload_ciphertext is None and row.looked_up_at is None for row in request.systems)


class BreakDeletes(httpx.BaseTransport):
    """HubSpot answers 500 to GDPR deletes while ``broken``; everything else goes through."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.broken = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.broken and request.url.path.endswith("/gdpr-delete"):
            return httpx.Response(500, json={"status": "error", "message": "internal", "category": "ERROR"})
        return self.inner.handle_request(request)


def test_an_erasure_that_failed_half_way_is_not_certified_and_a_rerun_finishes_it(rt: Runtime) -> None:
    breaker = BreakDeletes()
    rt.transports = {"hubspot-crm": breaker}
    request_id = submit(rt, "erasure")
    with pytest.raises(Exception, match="no definite answer from hubspot-crm"):
        erasure_request(request_id)
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.INCOMPLETE  # not completed, not certified
        assert {r.system: r.status for r in request.systems}["hubspot-crm"] is SystemStatus.FAILED
        assert not session.query(repo.Document).filter_by(request_id=request_id).count()

    breaker.broken = False
    erasure_request(request_id)
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        assert all(r.status is SystemStatus.ERASED for r in request.systems)
        erased = [
            e.data["system"]
            for e in session.query(Event).filter_by(request_id=request_id, kind="system.erased")
        ]
    assert sorted(erased) == ["app-db", "hubspot-crm"]  # app-db was erased once, in the first run

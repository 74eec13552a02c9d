"""Issue 5: letters to the data subject and to a customer, read back from the encrypted store and
from a real SMTP server, in both languages."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import select

from dsar import document_store, intake, letters
from dsar.calendar import due_date
from dsar.errors import BadInput
from dsar.ledger import repository as repo
from dsar.ledger.models import Document, Event, RequestStatus
from dsar.runtime import Runtime
from emulators.internal_db import DEMO_SUBJECT
from emulators.stack import EmulatorStack, emulator_stack
from tests.conftest import make_settings

REASONS = "We hold your data in eleven systems and received many requests this month."
RECEIVED = date(2025, 1, 31)  # a month end: the extension counts from the un-rolled end


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path_factory.mktemp("letters"), only=("app-db",)) as started:
        yield started


@pytest.fixture
def rt(stack: EmulatorStack, ledger_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime.from_settings(
        make_settings(
            tmp_path, ledger_url=ledger_url, systems_file=stack.systems_file, smtp_port=stack.mailbox.port
        )
    )
    yield runtime
    runtime.close()


def register(rt: Runtime, language: str = "nb", request_type: str = "access") -> str:
    from datetime import UTC, datetime, time

    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=None, name=DEMO_SUBJECT.name)
    return intake.register(
        rt.ledger,
        request_type=request_type,
        subject=subject,
        language=language,
        received_at=datetime.combine(RECEIVED, time(12), tzinfo=UTC),
    ).request_id


def stored_text(rt: Runtime, request_id: str, kind: str) -> str:
    with rt.ledger.session() as session:
        document = session.scalars(
            select(Document).where(Document.request_id == request_id, Document.kind == kind)
        ).one()
        assert document.path.endswith(".pdf.enc")
        assert not Path(document.path).read_bytes().startswith(b"%PDF")  # encrypted at rest
        pdf = document_store.read(rt.ledger, document)
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def mail_to(stack: EmulatorStack, address: str, request_id: str) -> str:
    (mail,) = [m for m in stack.mailbox.to(address) if request_id in str(m["Subject"])]
    return str(mail.get_content())


@pytest.mark.parametrize(
    ("language", "title"), [("nb", "Melding om forlenget frist"), ("en", "extended time")]
)
def test_an_extension_moves_the_deadline_and_tells_the_subject_why(
    rt: Runtime, stack: EmulatorStack, language: str, title: str
) -> None:
    request_id = register(rt, language)
    today = RECEIVED + timedelta(days=20)
    letters.extend(rt, request_id, reasons=REASONS, today=today)

    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.extended
        assert repo.effective_due_date(request, today) == due_date(RECEIVED, extended=True)
    new_due = due_date(RECEIVED, extended=True)
    text = stored_text(rt, request_id, "extension_notice")
    assert title.casefold() in text.casefold()
    assert REASONS[:40] in " ".join(text.split())
    months = ["January", "February", "March", "April", "May", "June", "July"]
    shown = (
        new_due.strftime("%d.%m.%Y")
        if language == "nb"
        else f"{new_due.day} {months[new_due.month - 1]} {new_due.year}"
    )
    assert shown in text  # the new deadline, as the reader's language writes dates
    assert "Datatilsynet" in text
    body = mail_to(stack, DEMO_SUBJECT.email.lower(), request_id)
    assert REASONS in " ".join(body.split())


def test_an_extension_after_the_first_month_or_twice_or_without_reasons_is_refused(rt: Runtime) -> None:
    request_id = register(rt)
    with pytest.raises(BadInput, match="first month ended"):
        letters.extend(rt, request_id, reasons=REASONS, today=RECEIVED + timedelta(days=40))
    with pytest.raises(BadInput, match="reasons"):
        letters.extend(rt, request_id, reasons="busy", today=RECEIVED + timedelta(days=2))
    letters.extend(rt, request_id, reasons=REASONS, today=RECEIVED + timedelta(days=2))
    with pytest.raises(BadInput, match="extended already"):
        letters.extend(rt, request_id, reasons=REASONS, today=RECEIVED + timedelta(days=3))


def test_a_refusal_closes_the_request_and_names_the_right_to_complain(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = register(rt, "en", request_type="erasure")
    letters.refuse(
        rt,
        request_id,
        reasons="The same request was answered in full two weeks ago.",
        partial=False,
        today=RECEIVED,
    )

    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.CLOSED, "refused")
    text = " ".join(stored_text(rt, request_id, "refusal").split())
    assert "We cannot grant your request" in text
    assert "answered in full two weeks ago" in text
    assert "Datatilsynet" in text
    assert "judicial remedy" in text
    assert "Article 12(4)" in text


def test_a_partial_refusal_leaves_the_request_open(rt: Runtime) -> None:
    request_id = register(rt, "nb")
    letters.refuse(
        rt,
        request_id,
        reasons="Opplysninger om andre personer i sakene er holdt tilbake.",
        partial=True,
        today=RECEIVED,
    )
    with rt.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.RECEIVED
    assert "bare delvis" in stored_text(rt, request_id, "partial_refusal")


def test_a_customer_whose_processor_we_are_is_told_and_nothing_else_happens(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = register(rt, "nb")
    letters.notify_controller_customer(
        rt, request_id, customer="Kunde AS", customer_email="personvern@kunde.example", today=RECEIVED
    )
    body = mail_to(stack, "personvern@kunde.example", request_id)
    assert "Til Kunde AS" in body
    assert "behandlingsansvarlig" in body
    with rt.ledger.session() as session:
        kinds = list(session.scalars(select(Event.kind).where(Event.request_id == request_id)))
    assert "request.forwarded_to_controller" in kinds


def test_a_letter_for_a_closed_request_is_refused(rt: Runtime) -> None:
    request_id = register(rt)
    letters.refuse(
        rt,
        request_id,
        reasons="The request was withdrawn by the data subject.",
        partial=False,
        today=RECEIVED,
    )
    with pytest.raises(BadInput, match="closed"):
        letters.extend(rt, request_id, reasons=REASONS, today=RECEIVED)


def test_the_identity_letter_renders_in_both_languages(rt: Runtime) -> None:
    for language, phrase in (("nb", "bekrefte identiteten"), ("en", "confirm your identity")):
        letter = letters.Letter(
            kind="identity_information",
            request_id="dsar-000000000000",
            request_type="erasure",
            language=language,
            received=RECEIVED,
            due=due_date(RECEIVED),
            issued=RECEIVED,
        )
        text = " ".join(
            page.extract_text() for page in pypdf.PdfReader(io.BytesIO(letters.render(rt, letter))).pages
        )
        assert phrase in text
        assert "dsar-000000000000" in text

"""Both flows over every system of the example configuration: five vendor emulators, two SQL
databases and LINK Mobility, which has no API and is asked by e-mail, its answer recorded by
an operator through Prefect's pause form."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsar import intake
from dsar.ledger import repository as repo
from dsar.ledger.models import RequestStatus, SystemStatus
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.operator import Operator
from emulators.stack import STARTERS, EmulatorStack, emulator_stack
from flows.access import access_request
from flows.erasure import erasure_request
from tests.conftest import make_settings
from tests.documents_helpers import stored_pdf_text
from tests.identity_helpers import confirm_identity

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]
LINK = "privacy@linkmobility.example"


def operator_answer(pause_key: str) -> dict[str, Any]:
    if pause_key.startswith("erase-"):
        return {
            "outcome": "erased",
            "operator": "Ingrid Operatør",
            "note": "LINK confirmed by letter.",
            "evidence": "saksmappe/link-svar.pdf",
        }
    return {"outcome": "found", "operator": "Ingrid Operatør", "records": 2, "note": "LINK answered."}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path / "systems") as started:
        yield started


@pytest.fixture
def rt(stack: EmulatorStack, tmp_path: Path) -> Iterator[Runtime]:
    settings = make_settings(
        tmp_path,
        systems_file=stack.systems_file,
        smtp_port=stack.mailbox.port,
        operator_poll_s=1,
        task_retries=0,
        http_backoff_base_s=0.01,
    )
    runtime = Runtime.from_settings(settings)
    with using(runtime):
        yield runtime
    runtime.close()


def run(rt: Runtime, request_type: str) -> tuple[str, str]:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    request_id = intake.register(
        rt.ledger, request_type=request_type, subject=subject, language="en"
    ).request_id
    confirm_identity(rt.ledger, request_id)
    flow = access_request if request_type == "access" else erasure_request
    path = flow(request_id)
    assert path is not None
    return request_id, stored_pdf_text(rt.ledger, path)


def test_every_system_answers_and_the_processor_is_asked_once_per_request(
    rt: Runtime, stack: EmulatorStack, prefect_harness: str
) -> None:
    with Operator(operator_answer, poll_s=0.3) as operator:
        access_id, report = run(rt, "access")
        erasure_id, certificate = run(rt, "erasure")

    for name in STARTERS:
        assert name in report
        assert name in certificate
    assert operator.answered == ["collect-link-mobility", "look-up-link-mobility", "erase-link-mobility"]
    to_link = stack.mailbox.to(LINK)
    asked = [m for m in to_link if ".art19-" not in str(m["Message-ID"])]
    assert [access_id in str(m["Subject"]) for m in asked] == [True, False]
    told = [m for m in to_link if ".art19-" in str(m["Message-ID"])]
    assert [erasure_id in str(m["Subject"]) for m in told] == [True]  # Art. 19, once, after the erasure
    assert erasure_id in str(asked[1]["Subject"])
    assert DEMO_SUBJECT.email.lower() in asked[1].get_content()  # the processor needs to know whom to erase
    assert "Confirmed by Ingrid Operatør" in certificate
    assert "Kept: invoice" in certificate  # bookkeeping records stay, and say so
    assert "What we keep, and why" in certificate
    assert "bokføringsloven § 13" in certificate  # the legal basis of what is kept
    assert "Kept in poweroffice-go (operated by PowerOffice AS)" in certificate

    with rt.ledger.session() as session:
        for request_id in (access_id, erasure_id):
            request = repo.get_request(session, request_id)
            assert request.status is RequestStatus.COMPLETED
            assert all(row.status.is_definite for row in request.systems)
        link = {r.system: r for r in repo.get_request(session, erasure_id).systems}["link-mobility"]
        assert (link.status, link.operator) == (SystemStatus.ERASED, "Ingrid Operatør")
        assert link.operator_note == "LINK confirmed by letter. (file: saksmappe/link-svar.pdf)"

    dump = "\n".join(sqlite3.connect(prefect_harness.split(":///", 1)[1]).iterdump()).lower()
    for value in (DEMO_SUBJECT.email.lower(), "91234567", "nordmann", "storgata 12"):
        assert value not in dump  # forms, inputs, logs and run names hold no personal data

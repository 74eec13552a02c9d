"""Issue 4 through Prefect: the operator's identity review (resumed through Prefect's client),
and a flow that stopped waiting for the subject, started again by the subject's late answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dsar import intake
from dsar.identity.web import create_identity_app
from dsar.ledger import repository as repo
from dsar.ledger.models import Event, RequestStatus
from dsar.runtime import Runtime, using
from emulators.internal_db import DEMO_SUBJECT
from emulators.operator import Operator
from emulators.server import free_port, serve_in_thread
from emulators.stack import EmulatorStack, emulator_stack
from flows.access import access_request
from tasks.identity import review_form_text
from tests.conftest import make_settings

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path_factory.mktemp("identity-flows"), only=("app-db",)) as started:
        yield started


def runtime(stack: EmulatorStack, tmp_path: Path, **settings: Any) -> Iterator[Runtime]:
    rt = Runtime.from_settings(
        make_settings(
            tmp_path,
            systems_file=stack.systems_file,
            smtp_port=stack.mailbox.port,
            operator_poll_s=1,
            task_retries=0,
            **settings,
        )
    )
    with using(rt):
        yield rt
    rt.close()


@pytest.fixture
def reviewed(stack: EmulatorStack, tmp_path: Path) -> Iterator[Runtime]:
    """Access requests are confirmed by an operator's review only."""
    yield from runtime(stack, tmp_path, identity_methods={"access": ["operator"]})


@pytest.fixture
def impatient(stack: EmulatorStack, tmp_path: Path) -> Iterator[Runtime]:
    """Access requests get an e-mail code, and the flow does not wait for the answer."""
    port = free_port()
    yield from runtime(
        stack,
        tmp_path,
        identity_methods={"access": ["email_code"]},
        identity_wait_s=0,
        public_url=f"http://127.0.0.1:{port}",
    )


def register(rt: Runtime) -> str:
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)
    return intake.register(
        rt.ledger, request_type="access", subject=subject, ticket_ref="ZD-4711", language="en"
    ).request_id


def event_kinds(rt: Runtime, request_id: str) -> list[str]:
    with rt.ledger.session() as session:
        return [e.kind for e in session.query(Event).filter_by(request_id=request_id).order_by(Event.seq)]


def decision(choice: str) -> dict[str, object]:
    return {"decision": choice, "operator": "Ingrid Operatør", "reason": "Checked the ticket history"}


def test_an_operator_approves_the_identity_and_the_request_is_answered(reviewed: Runtime) -> None:
    request_id = register(reviewed)
    with Operator(lambda key: decision("approve"), poll_s=0.3) as operator:
        report = access_request(request_id)

    assert report is not None
    assert report.endswith(".pdf.enc")
    assert operator.answered == ["identity"]
    with reviewed.ledger.session() as session:
        assert repo.get_request(session, request_id).status is RequestStatus.COMPLETED
    kinds = event_kinds(reviewed, request_id)
    assert kinds.index("identity.verified") < kinds.index("system.collected")  # nothing read before


def test_an_operator_rejects_the_identity_and_nothing_is_collected(reviewed: Runtime) -> None:
    request_id = register(reviewed)
    with Operator(lambda key: decision("reject"), poll_s=0.3):
        assert access_request(request_id) is None

    with reviewed.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.CLOSED, "identity_rejected")
        assert all(row.looked_up_at is None for row in request.systems)  # no system was asked
    assert "document.created" not in event_kinds(reviewed, request_id)


def test_the_review_form_names_the_request_and_ticket_not_the_person(reviewed: Runtime) -> None:
    request_id = register(reviewed)
    text = review_form_text.fn(request_id)
    assert request_id in text
    assert "ZD-4711" in text
    for value in (DEMO_SUBJECT.email, DEMO_SUBJECT.email.lower(), DEMO_SUBJECT.name, DEMO_SUBJECT.phone):
        assert value not in text


def test_a_late_answer_starts_the_stopped_flow_again(impatient: Runtime, stack: EmulatorStack) -> None:
    request_id = register(impatient)
    assert access_request(request_id) is None  # asked, then stopped waiting
    with impatient.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert (request.status, request.checkpoint) == (RequestStatus.AWAITING_SUBJECT, "awaiting_identity")
        assert [s.ended_on for s in request.suspensions] == [None]  # the clock stands still

    restarted: list[str] = []

    def restart(rid: str, request_type: str) -> None:  # what `dsar serve` does: start the flow again
        assert request_type == "access"
        restarted.append(str(access_request(rid)))

    port = int(impatient.settings.public_url.rsplit(":", 1)[1])
    app = create_identity_app(impatient.ledger, impatient.settings, restart=restart)
    mail = str(stack.mailbox.to(DEMO_SUBJECT.email.lower())[-1].get_content())
    (link,) = re.findall(r"http://\S+/identity/code/\S+", mail)
    (code,) = re.findall(r"one-time code is (\d{6})", mail)
    with serve_in_thread(app, port=port):
        answer = httpx.post(link, data={"code": code}, timeout=120)

    assert answer.status_code == 200, answer.text
    assert len(restarted) == 1
    assert restarted[0].endswith(".pdf.enc")
    with impatient.ledger.session() as session:
        request = repo.get_request(session, request_id)
        assert request.status is RequestStatus.COMPLETED
        assert all(s.ended_on is not None for s in request.suspensions)

"""Issue 4: identity verification over real HTTP, a real SMTP server and a real ledger.

BankID through the emulated OIDC broker (every forged token refused with its reason), the
e-mail one-time code (wrong, expired, too many attempts), the clock standing still while the
subject is asked, the reminder and the closing letter. The operator's review and the restart
after a late answer run through Prefect in ``test_identity_flows.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from dsar import intake
from dsar.calendar import OSLO, due_date
from dsar.identity import email_code, service
from dsar.identity.bankid import CALLBACK_PATH
from dsar.identity.checks import IDENTITY_SUSPENSION, is_verified
from dsar.identity.web import create_identity_app
from dsar.ledger import repository as repo
from dsar.ledger.models import Event, IdentityCheck, IdentityStatus, RequestStatus, Suspension
from dsar.runtime import Runtime
from emulators.internal_db import DEMO_SUBJECT
from emulators.oidc import OidcProviderState, synthetic_fnr
from emulators.oidc import create_app as oidc_app
from emulators.server import RunningServer, free_port, serve_in_thread
from emulators.stack import EmulatorStack, emulator_stack
from tests.conftest import make_settings

KARI_FNR = synthetic_fnr(date(1985, 5, 17))


def oslo_today() -> date:
    """The ledger's calendar is Oslo's: near midnight UTC it is already tomorrow there."""
    return datetime.now(OSLO).date()


LOGIN_LINK = re.compile(r"http://\S+/identity/login/\S+")
CODE_LINK = re.compile(r"http://\S+/identity/code/\S+")
CODE = re.compile(r"(?:Engangskoden din er|one-time code is) (\d{6})")


@dataclass
class World:
    rt: Runtime
    stack: EmulatorStack
    broker: OidcProviderState
    pages: RunningServer
    restarts: list[tuple[str, str]]

    def register(self, request_type: str = "access", name: str | None = DEMO_SUBJECT.name) -> str:
        subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=None, name=name)
        return intake.register(self.rt.ledger, request_type=request_type, subject=subject).request_id

    def mails_to_subject(self) -> list[EmailMessage]:
        return self.stack.mailbox.to(DEMO_SUBJECT.email.lower())

    def last_mail(self) -> str:
        return str(self.mails_to_subject()[-1].get_content())

    def events(self, request_id: str, kind: str) -> list[dict[str, Any]]:
        with self.rt.ledger.session() as session:
            stmt = (
                select(Event.data)
                .where(Event.request_id == request_id, Event.kind == kind)
                .order_by(Event.seq)
            )
            return list(session.scalars(stmt))

    def verified(self, request_id: str) -> bool:
        with self.rt.ledger.session() as session:
            return is_verified(session, request_id)

    def status(self, request_id: str) -> RequestStatus:
        with self.rt.ledger.session() as session:
            return repo.get_request(session, request_id).status


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path_factory.mktemp("identity"), only=("app-db",)) as started:
        yield started


def make_world(stack: EmulatorStack, ledger_url: str, tmp_path: Path) -> Iterator[World]:
    broker = OidcProviderState(next_person="kari")
    port = free_port()
    broker.redirect_uris = [f"http://127.0.0.1:{port}{CALLBACK_PATH}"]
    with serve_in_thread(oidc_app(broker)) as idp:
        settings = make_settings(
            tmp_path,
            ledger_url=ledger_url,
            systems_file=stack.systems_file,
            smtp_port=stack.mailbox.port,
            oidc_issuer=idp.url,
            oidc_client_id=broker.client_id,
            oidc_client_secret=SecretStr(broker.client_secret),
            public_url=f"http://127.0.0.1:{port}",
        )
        rt = Runtime.from_settings(settings)
        restarts: list[tuple[str, str]] = []
        app = create_identity_app(rt.ledger, settings, restart=lambda r, t: restarts.append((r, t)))
        with serve_in_thread(app, port=port) as pages:
            yield World(rt, stack, broker, pages, restarts)
        rt.close()


@pytest.fixture
def world(stack: EmulatorStack, ledger_url: str, tmp_path: Path) -> Iterator[World]:
    """On SQLite, PostgreSQL and MariaDB."""
    yield from make_world(stack, ledger_url, tmp_path)


@pytest.fixture
def sqlite_world(stack: EmulatorStack, tmp_path: Path) -> Iterator[World]:
    yield from make_world(stack, f"sqlite:///{tmp_path}/ledger.db", tmp_path)


def follow(url: str) -> httpx.Response:
    """A browser: the personal link, the broker's redirect, the callback, the page."""
    return httpx.get(url, follow_redirects=True, timeout=30)


# ---- BankID --------------------------------------------------------------------------------------


def test_bankid_login_confirms_the_subject_and_the_clock_runs_again(world: World) -> None:
    request_id = world.register()
    service.ask_subject(world.rt, request_id, "bankid")
    assert world.status(request_id) is RequestStatus.AWAITING_SUBJECT
    mail = world.last_mail()
    assert request_id in mail
    (link,) = LOGIN_LINK.findall(mail)

    page = follow(link)

    assert page.status_code == 200, page.text
    assert "Identiteten din er bekreftet" in page.text  # the request's language: bokmål
    assert world.verified(request_id)
    (verified,) = world.events(request_id, "identity.verified")
    assert verified | {"check": 0} == {
        "method": "bankid",
        "check": 0,
        "level": "high",
        "matched_by": "name_and_mailbox",
        "decided_by": None,
    }
    assert [e["to"] for e in world.events(request_id, "clock.resumed")] == [oslo_today().isoformat()]
    with world.rt.ledger.session() as session:
        check = session.scalars(select(IdentityCheck).where(IdentityCheck.request_id == request_id)).one()
        assert (check.state_hash, check.login_ciphertext) == (None, None)  # consumed
    assert KARI_FNR not in str(world.events(request_id, "identity.verified"))


def test_a_replayed_callback_is_refused_and_changes_nothing(world: World) -> None:
    request_id = world.register()
    service.ask_subject(world.rt, request_id, "bankid")
    (link,) = LOGIN_LINK.findall(world.last_mail())
    with httpx.Client(timeout=30) as browser:
        to_broker = browser.get(link)
        assert to_broker.status_code == 302
        back = browser.get(to_broker.headers["location"])
        assert back.status_code == 302
        callback = back.headers["location"]
        assert callback.startswith(world.pages.url + CALLBACK_PATH)
        assert browser.get(callback).status_code == 200
        replay = browser.get(callback)
    assert replay.status_code == 404
    assert len(world.events(request_id, "identity.verified")) == 1


def test_a_state_that_was_never_issued_is_refused(sqlite_world: World) -> None:
    answer = httpx.get(f"{sqlite_world.pages.url}{CALLBACK_PATH}?code=abc&state=forged-state")
    assert answer.status_code == 404
    assert "<script" not in answer.text


FORGERIES = [
    ("other_key", "bad_signature"),
    ("unknown_kid", "unknown_kid"),
    ("alg_none", "alg_not_allowed"),
    ("hs256_public_key", "alg_not_allowed"),
    ("expired", "expired"),
    ("wrong_issuer", "wrong_issuer"),
    ("wrong_audience", "wrong_audience"),
    ("low_acr", "acr_too_low"),
    ("wrong_nonce", "nonce_mismatch"),
]


@pytest.mark.parametrize(("forgery", "reason"), FORGERIES)
def test_a_forged_id_token_is_refused_with_its_reason(sqlite_world: World, forgery: str, reason: str) -> None:
    world = sqlite_world
    request_id = world.register()
    service.ask_subject(world.rt, request_id, "bankid")
    (link,) = LOGIN_LINK.findall(world.last_mail())
    world.broker.forge = forgery  # type: ignore[assignment]

    page = follow(link)

    assert page.status_code == 400
    assert not world.verified(request_id)
    assert [e["reason"] for e in world.events(request_id, "identity.failed")] == [reason]
    assert world.status(request_id) is RequestStatus.AWAITING_SUBJECT  # still waiting, clock stopped
    assert follow(link).status_code == 200  # the subject may try again with a good login
    assert world.verified(request_id)


def test_someone_else_logging_in_is_not_the_subject(sqlite_world: World) -> None:
    world = sqlite_world
    request_id = world.register()
    service.ask_subject(world.rt, request_id, "bankid")
    world.broker.next_person = "ola"  # Ola Nordmann follows Kari's link

    page = follow(LOGIN_LINK.findall(world.last_mail())[0])

    assert page.status_code == 400
    assert not world.verified(request_id)
    assert [e["reason"] for e in world.events(request_id, "identity.failed")] == ["identity_mismatch"]


def test_a_national_id_on_record_must_be_the_one_that_logged_in(sqlite_world: World) -> None:
    world = sqlite_world
    request_id = world.register()
    keys = world.rt.ledger.keys
    with world.rt.ledger.session() as session:  # the request names a different person's national id
        request = repo.get_request(session, request_id)
        on_record = keys.cipher.decrypt_json(request.subject_ciphertext)
        other = synthetic_fnr(date(1990, 1, 1))
        on_record["national_id_hash"] = keys.hash(f"national_id:{other}")
        request.subject_ciphertext = keys.cipher.encrypt_json(on_record)
    service.ask_subject(world.rt, request_id, "bankid")

    assert follow(LOGIN_LINK.findall(world.last_mail())[0]).status_code == 400
    assert [e["reason"] for e in world.events(request_id, "identity.failed")] == ["identity_mismatch"]

    with world.rt.ledger.session() as session:  # now Kari's own: the keyed hashes match
        request = repo.get_request(session, request_id)
        on_record["national_id_hash"] = keys.hash(f"national_id:{KARI_FNR}")
        request.subject_ciphertext = keys.cipher.encrypt_json(on_record)
    assert follow(LOGIN_LINK.findall(world.last_mail())[0]).status_code == 200
    assert world.events(request_id, "identity.verified")[0]["matched_by"] == "national_id"


def test_an_unknown_link_is_a_404_and_a_superseded_one_a_400(sqlite_world: World) -> None:
    world = sqlite_world
    assert follow(f"{world.pages.url}/identity/login/not-a-token").status_code == 404
    request_id = world.register()
    service.ask_subject(world.rt, request_id, "bankid")
    old = LOGIN_LINK.findall(world.last_mail())[0]
    service.ask_subject(world.rt, request_id, "bankid", reminder=True)  # a new link replaces it
    assert follow(old).status_code == 400
    assert follow(LOGIN_LINK.findall(world.last_mail())[0]).status_code == 200


# ---- the e-mail code -----------------------------------------------------------------------------


def code_challenge(world: World) -> tuple[str, str, str]:
    request_id = world.register(request_type="erasure", name=None)
    service.ask_subject(world.rt, request_id, "email_code")
    mail = world.last_mail()
    (link,) = CODE_LINK.findall(mail)
    (code,) = CODE.findall(mail)
    return request_id, link, code


def test_the_e_mailed_code_confirms_the_subject(world: World) -> None:
    request_id, link, code = code_challenge(world)
    with world.rt.ledger.session() as session:  # only a keyed hash of the code is kept
        check = session.scalars(select(IdentityCheck).where(IdentityCheck.request_id == request_id)).one()
        assert check.code_hash
        assert code not in check.code_hash
    assert code not in str(world.events(request_id, "identity.requested"))

    form = httpx.get(link)
    assert form.status_code == 200
    assert 'name="code"' in form.text
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert httpx.post(link, data={"code": wrong}).status_code == 400
    done = httpx.post(link, data={"code": code})

    assert done.status_code == 200
    assert world.verified(request_id)
    assert [e["reason"] for e in world.events(request_id, "identity.failed")] == ["wrong_code"]
    assert world.events(request_id, "identity.verified")[0]["matched_by"] == "email_on_record"
    assert httpx.post(link, data={"code": code}).status_code == 200  # already confirmed, said so


def test_too_many_wrong_codes_end_the_challenge(sqlite_world: World) -> None:
    world = sqlite_world
    request_id, link, code = code_challenge(world)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    statuses = [httpx.post(link, data={"code": wrong}).status_code for _ in range(5)]
    assert statuses == [400] * 5
    assert httpx.post(link, data={"code": code}).status_code == 400  # the right one, too late
    assert not world.verified(request_id)
    reasons = [e["reason"] for e in world.events(request_id, "identity.failed")]
    assert reasons == ["wrong_code"] * 4 + ["too_many_attempts"]


def test_an_expired_code_is_refused(sqlite_world: World) -> None:
    world = sqlite_world
    request_id, link, code = code_challenge(world)
    token = link.rsplit("/", 1)[1]
    later = datetime.now(UTC) + timedelta(seconds=world.rt.settings.identity_code_valid_s + 1)
    answer = email_code.check_code(world.rt.ledger, world.rt.settings, token=token, code=code, now=later)
    assert (answer.verified, answer.reason) == (False, "code_expired")
    assert not world.verified(request_id)


@pytest.mark.parametrize(
    "body", [b"code=" + b"1" * 2000, b"\xff\xfe", b"", b"code=abc", b"code=12%203456&x=1&y=2&z=3&w=4"]
)
def test_a_malformed_code_form_is_a_4xx(sqlite_world: World, body: bytes) -> None:
    request_id, link, _ = code_challenge(sqlite_world)
    answer = httpx.post(link, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert 400 <= answer.status_code < 500
    assert not sqlite_world.verified(request_id)


# ---- the clock, the reminder, the closing letter -------------------------------------------------


def start_waiting_days_ago(world: World, request_id: str, days: int) -> None:
    with world.rt.ledger.session() as session:
        session.execute(
            update(Suspension)
            .where(Suspension.request_id == request_id)
            .values(started_on=oslo_today() - timedelta(days=days))
        )


def test_the_days_waiting_for_the_subject_move_the_deadline(world: World) -> None:
    request_id, link, code = code_challenge(world)
    start_waiting_days_ago(world, request_id, 10)
    assert httpx.post(link, data={"code": code}).status_code == 200
    with world.rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        (suspension,) = request.suspensions
        assert (suspension.ended_on, suspension.reason) == (oslo_today(), IDENTITY_SUSPENSION)
        later = oslo_today() + timedelta(days=40)
        assert repo.effective_due_date(request, later) == due_date(request.received_date, suspended_days=10)


def test_one_reminder_then_the_request_is_closed_with_a_letter(world: World) -> None:
    request_id, _, _ = code_challenge(world)
    settings = world.rt.settings
    start_waiting_days_ago(world, request_id, settings.identity_reminder_days)

    first = service.chase_unanswered(world.rt, oslo_today())
    again = service.chase_unanswered(world.rt, oslo_today())

    assert (first.reminded, first.closed, again.reminded) == ([request_id], [], [])
    assert "Påminnelse" in str(world.mails_to_subject()[-1]["Subject"])
    assert CODE_LINK.findall(world.last_mail())  # a fresh code and link

    start_waiting_days_ago(world, request_id, settings.identity_close_after_days)
    closed = service.chase_unanswered(world.rt, oslo_today())

    assert closed.closed == [request_id]
    assert world.status(request_id) is RequestStatus.CLOSED
    letter = world.mails_to_subject()[-1]
    assert "kunne ikke behandles" in str(letter["Subject"])
    assert "Datatilsynet" in letter.get_content()
    assert service.chase_unanswered(world.rt, oslo_today()).closed == []  # once
    with world.rt.ledger.session() as session:
        statuses = session.scalars(select(IdentityCheck.status).where(IdentityCheck.request_id == request_id))
        assert IdentityStatus.PENDING not in set(statuses)
        (suspension,) = repo.get_request(session, request_id).suspensions
        assert suspension.ended_on == oslo_today()


def test_the_policy_picks_a_method_the_request_can_use(sqlite_world: World) -> None:
    world = sqlite_world
    named, unnamed = world.register(), world.register(request_type="erasure", name=None)
    phone_only = intake.register(
        world.rt.ledger,
        request_type="access",
        subject=intake.build_subject(email=None, phone="+4740506070", name=None),
    ).request_id
    assert service.method_for(world.rt, named) == "bankid"
    assert service.method_for(world.rt, unnamed) == "email_code"  # BankID needs a name to compare
    assert service.method_for(world.rt, phone_only) == "operator"  # nothing can be mailed
    assert service.method_for(world.rt, phone_only, without_operator=True) == "operator"


def test_a_closed_request_reopens_and_the_days_it_stood_closed_do_not_count(sqlite_world: World) -> None:
    world = sqlite_world
    request_id, _, _ = code_challenge(world)
    start_waiting_days_ago(world, request_id, world.rt.settings.identity_close_after_days)
    service.chase_unanswered(world.rt, oslo_today())
    with world.rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        request.closed_at = datetime.now(UTC) - timedelta(days=30)  # the subject comes back a month later
        before = repo.suspended_days(request, oslo_today())

    with world.rt.ledger.session() as session:
        request = repo.reopen_request(session, request_id=request_id, today=oslo_today(), note="test")
        assert (request.status, request.checkpoint) == (RequestStatus.RECEIVED, "reopened")
        assert repo.suspended_days(request, oslo_today()) == before + 30
    with world.rt.ledger.session() as session, pytest.raises(ValueError, match="only a request"):
        repo.reopen_request(session, request_id=request_id, today=oslo_today(), note="twice")
    assert service.method_for(world.rt, request_id) == "email_code"  # asked again from the start


def test_only_a_request_closed_for_want_of_identity_reopens(sqlite_world: World) -> None:
    request_id = sqlite_world.register()
    with sqlite_world.rt.ledger.session() as session, pytest.raises(ValueError, match="only a request"):
        repo.reopen_request(session, request_id=request_id, today=oslo_today(), note="test")

"""The deadline watch under Prefect, mailing a real SMTP server on loopback: once per alert."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import date, datetime, time
from email.message import EmailMessage
from pathlib import Path
from time import monotonic, sleep

import pytest
from cryptography.fernet import Fernet
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.events.schemas.events import ReceivedEvent
from pydantic import SecretStr
from sqlalchemy import select

from dsar.calendar import OSLO
from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.models import AlertSent, MailStatus, OutboxMail, RequestStatus, RequestType
from dsar.runtime import Runtime, using
from emulators.mailbox import Mailbox
from flows.deadlines import deadline_watch
from integrations.base import Subject
from tasks.alerts import SMTP_SECRET_BLOCK, message_id, smtp_config
from tests.conftest import make_settings
from tests.databases import make_database_url

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

PRIVACY = "personvern@fjordlys.example"
KEY = Fernet.generate_key().decode()  # one key, so a second runtime reads the first one's outbox
TODAY = "2025-04-08"  # a Tuesday
PEOPLE = [
    Subject(email="kari.nordmann@example.no", phone="+4791234567", name="Kari Nordmann"),
    Subject(email="ola.hansen@example.no", phone="+4798765432", name="Ola Hansen"),
    Subject(email="per.olsen@example.no", phone="+4741234567", name="Per Olsen"),
    Subject(email="lise.berg@example.no", phone="+4747654321", name="Lise Berg"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The watch runs on SQLite and PostgreSQL; the scan's own tests add MariaDB."""
    with make_database_url(request.param) as url:
        yield url


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with Mailbox() as box:
        yield box


def make_runtime(tmp_path: Path, ledger_url: str, port: int, language: str = "nb") -> Runtime:
    settings = make_settings(
        tmp_path,
        ledger_url=ledger_url,
        encryption_key=KEY,
        smtp_port=port,
        alert_language=language,
        privacy_mailbox=PRIVACY,
    )
    return Runtime(settings=settings, ledger=Ledger(settings), specs=())


@pytest.fixture
def rt(tmp_path: Path, ledger_url: str, mailbox: Mailbox) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, ledger_url, mailbox.port)
    with using(runtime):
        yield runtime
    runtime.close()


def register(ledger: Ledger, subject: Subject, received: date, status: RequestStatus | None = None) -> str:
    with ledger.session() as session:
        request = repo.register_request(
            session,
            keys=ledger.keys,
            request_type=RequestType.ERASURE,
            subject=subject,
            received_at=datetime.combine(received, time(9), OSLO),
        )
        if status:
            repo.set_status(session, request=request, status=status)
        return request.id


def seed(ledger: Ledger) -> dict[str, str]:
    """Due in 2 days, overdue, closed (silent), and due in 24 days (digest only)."""
    return {
        "soon": register(ledger, PEOPLE[0], date(2025, 3, 10)),  # due Thu 10 April
        "late": register(ledger, PEOPLE[1], date(2025, 2, 20)),  # due Thu 20 March
        "closed": register(ledger, PEOPLE[2], date(2025, 3, 10), RequestStatus.CLOSED),
        "later": register(ledger, PEOPLE[3], date(2025, 4, 1)),  # due Fri 2 May
    }


def subjects(messages: list[EmailMessage]) -> list[str]:
    return sorted(str(m["Subject"]) for m in messages)


def assert_no_personal_data(messages: list[EmailMessage]) -> None:
    for message in messages:
        text = message.as_string()
        for person in PEOPLE:
            for value in (person.email, person.phone, person.name, (person.name or "").split()[-1]):
                assert value
                assert value not in text


NOBODY_CHASED = {"identity_reminded": 0, "identity_closed": 0}  # no subject was asked for identity


def test_each_alert_reaches_the_mailbox_once_across_runs(rt: Runtime, mailbox: Mailbox) -> None:
    ids = seed(rt.ledger)
    first = deadline_watch(TODAY)
    assert first == {"alerts": 3, "queued": 3, "digest": 1, "sent": 4, "failed": 0} | NOBODY_CHASED
    again = deadline_watch(TODAY)
    assert again == {"alerts": 0, "queued": 0, "digest": 0, "sent": 0, "failed": 0} | NOBODY_CHASED

    messages = mailbox.to(PRIVACY)
    assert len(messages) == 4
    expected = {
        f"due_soon:{ids['soon']}:2025-04-10:3",
        f"extension_decision:{ids['soon']}",
        f"overdue:{ids['late']}:2025-03-20",
        f"digest:{TODAY}",
    }
    assert sorted(str(m["Message-ID"]) for m in messages) == sorted(message_id(k) for k in expected)
    assert not [m for m in messages if ids["closed"] in m.as_string()]
    with rt.ledger.session() as session:
        assert set(session.scalars(select(AlertSent.key))) == expected
    assert_no_personal_data(messages)


def test_the_next_day_sends_only_what_is_new(rt: Runtime, mailbox: Mailbox) -> None:
    ids = seed(rt.ledger)
    deadline_watch(TODAY)
    next_day = deadline_watch("2025-04-09")
    assert next_day == {"alerts": 1, "queued": 1, "digest": 1, "sent": 2, "failed": 0} | NOBODY_CHASED
    new = {str(m["Message-ID"]) for m in mailbox.to(PRIVACY)[4:]}
    assert new == {message_id(f"due_soon:{ids['soon']}:2025-04-10:1"), message_id("digest:2025-04-09")}


@pytest.mark.parametrize(
    ("language", "phrases"),
    [
        ("nb", ["[Personvernfrist]", "Til personvernteamet,", "har svarfrist 10.04.2025: 2 dager igjen"]),
        (
            "en",
            ["[Privacy deadline]", "To the privacy team,", "must be answered by 10 April 2025: 2 days left"],
        ),
    ],
)
def test_alerts_are_worded_in_the_configured_language(
    tmp_path: Path, ledger_url: str, mailbox: Mailbox, language: str, phrases: list[str]
) -> None:
    runtime = make_runtime(tmp_path, ledger_url, mailbox.port, language)
    with using(runtime):
        ids = seed(runtime.ledger)
        deadline_watch(TODAY)
    runtime.close()
    soon = [m for m in mailbox.to(PRIVACY) if "due_soon" in str(m["Message-ID"])]
    assert len(soon) == 1
    text = str(soon[0]["Subject"]) + "\n" + soon[0].get_content()
    for phrase in phrases:
        assert phrase in text
    assert ids["soon"] in text
    digest = next(m for m in mailbox.to(PRIVACY) if "digest" in str(m["Message-ID"]))
    body = digest.get_content()
    assert ids["closed"] not in body
    assert body.index(ids["late"]) < body.index(ids["soon"]) < body.index(ids["later"]), "soonest first"


def test_an_smtp_outage_keeps_mail_queued_until_a_later_run(rt: Runtime, mailbox: Mailbox) -> None:
    seed(rt.ledger)
    mailbox.refuse_next = 100
    down = deadline_watch(TODAY)
    assert down == {"alerts": 3, "queued": 3, "digest": 1, "sent": 0, "failed": 4} | NOBODY_CHASED
    assert mailbox.messages == []
    with rt.ledger.session() as session:
        assert list(session.scalars(select(OutboxMail.status))) == [MailStatus.FAILED] * 4
    mailbox.refuse_next = 0
    back = deadline_watch(TODAY)
    assert back == {"alerts": 0, "queued": 0, "digest": 0, "sent": 4, "failed": 0} | NOBODY_CHASED
    deadline_watch(TODAY)
    assert len(mailbox.to(PRIVACY)) == 4
    assert len({str(m["Message-ID"]) for m in mailbox.messages}) == 4


def test_a_closed_smtp_port_loses_nothing(tmp_path: Path, ledger_url: str, mailbox: Mailbox) -> None:
    offline = make_runtime(tmp_path, ledger_url, closed_port())
    with using(offline):
        seed(offline.ledger)
        assert deadline_watch(TODAY)["failed"] == 4
    offline.close()
    online = make_runtime(tmp_path, ledger_url, mailbox.port)
    with using(online):
        assert deadline_watch(TODAY)["sent"] == 4
        assert deadline_watch(TODAY)["sent"] == 0
    online.close()
    assert len(mailbox.to(PRIVACY)) == 4


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_each_new_alert_is_a_prefect_event_with_ids_and_dates(rt: Runtime) -> None:
    ids = seed(rt.ledger)
    deadline_watch(TODAY)
    deadline_watch(TODAY)
    events = wait_for_events([f"dsar.request.{ids['soon']}", f"dsar.request.{ids['late']}"], count=3)
    assert sorted((e.event, e.resource.id) for e in events) == [
        ("dsar.deadline.due_soon", f"dsar.request.{ids['soon']}"),
        ("dsar.deadline.extension_decision", f"dsar.request.{ids['soon']}"),
        ("dsar.deadline.overdue", f"dsar.request.{ids['late']}"),
    ]
    overdue = next(e for e in events if e.event == "dsar.deadline.overdue")
    assert overdue.payload == {"days_left": -19, "due_date": "2025-03-20"}


def wait_for_events(resources: list[str], count: int, timeout_s: float = 20) -> list[ReceivedEvent]:
    """The server's events about ``resources``, once ``count`` arrived (the client sends them async)."""
    deadline = monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            query = EventFilter(  # built each time: its "until" defaults to now
                event=EventNameFilter(prefix=["dsar.deadline."]), resource=EventResourceFilter(id=resources)
            )
            events = list(client.read_events(query, limit=50).events)
            if len(events) >= count or monotonic() > deadline:
                return events
            sleep(0.25)


def test_the_smtp_password_comes_from_settings_or_a_secret_block(tmp_path: Path) -> None:
    Secret(value=SecretStr("from-the-block")).save(SMTP_SECRET_BLOCK, overwrite=True)
    with_block = make_settings(tmp_path, smtp_username="watch", smtp_security="starttls")
    assert smtp_config(with_block).password == "from-the-block"
    assert smtp_config(with_block).security == "starttls"
    given = make_settings(tmp_path, smtp_username="watch", smtp_password="from-settings")
    assert smtp_config(given).password == "from-settings"
    assert smtp_config(make_settings(tmp_path)).password is None, "no username: no login, no block"

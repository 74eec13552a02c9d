"""Rectification (Art. 16), restriction and its lifting (Art. 18) and objection to direct marketing
(Art. 21(2), 7(3)) end to end: every emulated system, the operator answering Prefect's forms, a real
SMTP server on loopback, the ledger on SQLite and PostgreSQL. What each system holds afterwards is
read back from the emulators' own state (and app-db's tables), not from the pipeline's ledger."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import select
from typer.testing import CliRunner

from dsar import intake, letters, suppression
from dsar.calendar import OSLO
from dsar.cli import app as dsar_app
from dsar.errors import BadInput
from dsar.ledger import repository as repo
from dsar.ledger.models import Event, RequestStatus, Suppression, SystemStatus
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.hubspot import SUBSCRIPTION_TYPES
from emulators.internal_db import customers, newsletter_subscriptions, orders
from emulators.operator import Operator
from emulators.stack import EmulatorStack, emulator_stack
from flows.erasure import erasure_request
from flows.rights import lift_restriction, objection_request, rectification_request, restriction_request
from integrations.base import Subject
from tests.conftest import flow_settings
from tests.databases import make_database_url
from tests.identity_helpers import confirm_identity

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

# Every recipient in config/systems.example.yaml (Art. 4(9): processors count) and its contact.
RECIPIENTS = {
    "hubspot-crm": "privacy@hubspot.example",
    "zendesk-support": "privacy@zendesk.example",
    "link-mobility": "privacy@linkmobility.example",
    "poweroffice-go": "personvern@poweroffice.example",
    "tripletex": "personvern@tripletex.example",
    "twentyfour": "privacy@24sevenoffice.example",
}
WITH_API = ("hubspot-crm", "zendesk-support", "app-db")  # rectify and restrict through their APIs
BY_HAND = ("sms-log", "link-mobility", "poweroffice-go", "tripletex", "twentyfour")  # an operator's form
MARKETING = ("hubspot-crm", "app-db")  # direct_marketing: true in the register
OPERATOR = "Ingrid Operatør"

EMAIL, PHONE, NAME = DEMO_SUBJECT.email.lower(), DEMO_SUBJECT.phone, DEMO_SUBJECT.name
NEW_NAME, NEW_EMAIL, NEW_PHONE = "Kari Anne Berg", "kari.berg@example.no", "+4799887766"
NEWSLETTER = SUBSCRIPTION_TYPES[0][0]
OTHER_EMAIL, OTHER_PHONE = "ola.nordmann@example.no", "+4798765432"
KARI = Subject(email=EMAIL, phone=PHONE, name=NAME)


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


# ---- helpers ----------------------------------------------------------------------------------


def submit(rt: Runtime, request_type: str, **details: Any) -> str:
    """Register Kari's request (with its details, checked as intake checks them), identity confirmed."""
    subject = intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=NAME)
    checked = intake.build_details(corrections=details.pop("corrections", None)) | details
    request_id = intake.register(
        rt.ledger, request_type=request_type, subject=subject, language="en", details=checked or None
    ).request_id
    return confirm_identity(rt.ledger, request_id)


def answer(key: str) -> dict[str, object]:
    """The operator: the processor (LINK) found her, and every right was carried out by hand."""
    if key.startswith("look-up-"):
        return {"outcome": "found", "operator": OPERATOR, "records": 2, "note": "LINK answered by e-mail."}
    if key == "approve-erasure":
        return {"decision": "approve", "operator": OPERATOR, "reason": "Plan checked against the case."}
    if key.startswith("erase-"):
        return {"outcome": "erased", "operator": OPERATOR, "note": "LINK confirmed by letter."}
    return {"outcome": "done", "operator": OPERATOR, "note": "Done by hand in the vendor's screen."}


def events(rt: Runtime, request_id: str, kind: str) -> list[dict[str, Any]]:
    with rt.ledger.session() as session:
        stmt = select(Event.data).where(Event.request_id == request_id, Event.kind == kind)
        return list(session.scalars(stmt.order_by(Event.seq)))


def statuses(rt: Runtime, request_id: str) -> dict[str, SystemStatus]:
    with rt.ledger.session() as session:
        return {r.system: r.status for r in repo.get_request(session, request_id).systems}


def request_state(rt: Runtime, request_id: str) -> tuple[RequestStatus, str | None]:
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        return request.status, request.checkpoint


def marked(stack: EmulatorStack, marker: str) -> list[EmailMessage]:
    """The mails whose Message-ID holds ``marker``, in the order the SMTP server received them."""
    return [m for m in list(stack.mailbox.messages) if marker in str(m["Message-ID"])]


def art19(stack: EmulatorStack, action: str) -> dict[str, int]:
    return dict(Counter(str(m["To"]) for m in marked(stack, f".art19-{action}.")))


def everyone_told_once() -> dict[str, int]:
    return dict.fromkeys(RECIPIENTS.values(), 1)


def hubspot_contact(stack: EmulatorStack, email: str) -> str:
    return next(
        c.id for c in stack.hubspot.objects["contacts"].values() if c.properties.get("email") == email
    )


def hubspot_props(stack: EmulatorStack, contact_id: str) -> dict[str, Any]:
    return dict(stack.hubspot.objects["contacts"][contact_id].properties)


def zendesk_karis(stack: EmulatorStack) -> tuple[int, int]:
    """Kari's web profile and her SMS-only profile in the Zendesk emulator."""
    users = stack.states["zendesk-support"].users
    web = next(uid for uid, u in users.items() if u["name"] == NAME and u["email"] == EMAIL)
    sms = next(uid for uid, u in users.items() if u["name"] == "Kari (SMS)")
    return web, sms


def app_db_rows(stack: EmulatorStack, table: sa.Table) -> list[dict[str, Any]]:
    with stack.app_db.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.id))]


def kari_customer(stack: EmulatorStack, customer_id: int) -> dict[str, Any]:
    return next(row for row in app_db_rows(stack, customers) if row["id"] == customer_id)


def kari_customer_id(stack: EmulatorStack) -> int:
    return int(next(row["id"] for row in app_db_rows(stack, customers) if row["email"].lower() == EMAIL))


def is_suppressed(rt: Runtime, **identifiers: str) -> bool:
    with rt.ledger.session() as session:
        return suppression.is_suppressed(session, keys=rt.ledger.keys, **identifiers)


def cli_env(rt: Runtime, stack: EmulatorStack) -> dict[str, str | None]:
    return {
        # The CLI sets Prefect defaults in its process; in-process here, they are undone after it.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": None,
        "DSAR_VAR_DIR": str(rt.settings.var_dir),
        "DSAR_LEDGER_URL": rt.settings.ledger_url,
        "DSAR_ENCRYPTION_KEY": rt.settings.secret("encryption_key"),
        "DSAR_HASH_KEY": rt.settings.secret("hash_key"),
        "DSAR_SYSTEMS_FILE": str(stack.systems_file),
        "DSAR_SMTP_PORT": str(stack.mailbox.port),
    }


def today() -> date:
    return datetime.now(OSLO).date()


# ---- rectification (Art. 16, 19) --------------------------------------------------------------


def test_rectification_corrects_every_system_tells_each_recipient_once_and_the_subject(
    rt: Runtime, stack: EmulatorStack
) -> None:
    contact = hubspot_contact(stack, EMAIL)
    web, sms = zendesk_karis(stack)
    customer_id = kari_customer_id(stack)
    others_in_hubspot = {
        c.id: dict(c.properties) for c in stack.hubspot.objects["contacts"].values() if c.id != contact
    }
    request_id = submit(
        rt, "rectification", corrections={"name": NEW_NAME, "email": NEW_EMAIL, "phone": "+47 998 87 766"}
    )

    with Operator(answer, poll_s=0.3) as operator:
        letter = rectification_request(request_id)
    assert letter is not None

    # HubSpot: the contact holds the corrected values, and nothing else moved
    props = hubspot_props(stack, contact)
    assert (props["firstname"], props["lastname"]) == ("Kari Anne", "Berg")
    assert (props["email"], props["phone"]) == (NEW_EMAIL, NEW_PHONE)
    assert props["city"] == "Oslo"
    assert {
        c.id: dict(c.properties) for c in stack.hubspot.objects["contacts"].values() if c.id != contact
    } == others_in_hubspot
    # Zendesk: both of her profiles, the old primary e-mail and phone replaced
    zendesk = stack.states["zendesk-support"]
    assert zendesk.users[web]["name"] == zendesk.users[sms]["name"] == NEW_NAME
    assert zendesk.users[web]["email"] == NEW_EMAIL
    assert zendesk.users[web]["phone"] == zendesk.users[sms]["phone"] == NEW_PHONE
    values = [i["value"] for uid in (web, sms) for i in zendesk.identities[uid]]
    assert not {EMAIL, "+47 912 34 567", "91234567", PHONE} & set(values)
    # app-db: the customer row and her newsletter subscription
    row = kari_customer(stack, customer_id)
    assert (row["full_name"], row["email"], row["phone"]) == (NEW_NAME, NEW_EMAIL, NEW_PHONE)
    subscribed = [r["email"] for r in app_db_rows(stack, newsletter_subscriptions)]
    assert NEW_EMAIL in subscribed
    assert EMAIL not in [e.lower() for e in subscribed]
    # and a fresh look-up by the old identity finds nothing in the three
    for name in WITH_API:
        client = rt.system(name)
        try:
            assert not client.lookup(KARI).found, name
        finally:
            client.close()

    # The systems without the ability were done by hand, each asked once
    assert sorted(k for k in operator.answered if k.startswith("rectification-")) == sorted(
        f"rectification-{name}" for name in BY_HAND
    )
    assert operator.answered.count("look-up-link-mobility") == 1
    status = statuses(rt, request_id)
    assert {name: status[name] for name in WITH_API} == dict.fromkeys(WITH_API, SystemStatus.APPLIED)
    assert {name: status[name] for name in BY_HAND} == dict.fromkeys(BY_HAND, SystemStatus.MANUAL)
    applied = [e["system"] for e in events(rt, request_id, "system.applied")]
    assert sorted(applied) == sorted(WITH_API)

    # Art. 19: each recipient once, with the corrected values; our own systems are no recipients
    assert art19(stack, "rectification") == everyone_told_once()
    for message in marked(stack, ".art19-rectification."):
        body = message.get_content()
        assert request_id in str(message["Subject"])
        assert NEW_EMAIL in body
        assert NEW_PHONE in body
        assert NEW_NAME in body
    # the subject's confirmation letter, at the corrected address (the old one may be gone)
    confirmation = marked(stack, f"<{request_id}.rights_confirmation-")
    assert [str(m["To"]) for m in confirmation] == [NEW_EMAIL]
    assert request_id in confirmation[0].get_content()
    assert request_state(rt, request_id) == (RequestStatus.COMPLETED, "rectified")

    sent = len(stack.mailbox.messages)
    with Operator(answer, poll_s=0.3) as again, pytest.raises(Exception, match="already"):
        rectification_request(request_id)
    assert again.answered == []
    assert len(stack.mailbox.messages) == sent
    assert len(events(rt, request_id, "system.applied")) == len(WITH_API)


# ---- restriction (Art. 18, 19) and lifting it (Art. 18(3)) ------------------------------------


def test_restriction_marks_every_system_then_is_lifted_only_after_the_subject_was_told(
    rt: Runtime, stack: EmulatorStack
) -> None:
    contact = hubspot_contact(stack, EMAIL)
    web, sms = zendesk_karis(stack)
    customer_id = kari_customer_id(stack)
    zendesk = stack.states["zendesk-support"]
    request_id = submit(rt, "restriction")

    with Operator(answer, poll_s=0.3) as operator:
        assert restriction_request(request_id) is not None

    assert hubspot_props(stack, contact)["dsar_processing_restricted"] == "true"
    flagged = [
        c.id
        for c in stack.hubspot.objects["contacts"].values()
        if c.properties.get("dsar_processing_restricted") == "true"
    ]
    assert flagged == [contact]
    assert [uid for uid, u in zendesk.users.items() if "dsar_restricted" in u["tags"]] == [web, sms]
    assert kari_customer(stack, customer_id)["processing_restricted"] is True
    restricted = [r["id"] for r in app_db_rows(stack, customers) if r["processing_restricted"]]
    assert restricted == [customer_id]
    her_orders = [r for r in app_db_rows(stack, orders) if r["customer_id"] == customer_id]
    assert her_orders
    assert all(r["processing_restricted"] for r in her_orders)
    assert sorted(k for k in operator.answered if k.startswith("restriction-")) == sorted(
        f"restriction-{name}" for name in BY_HAND
    )
    assert art19(stack, "restriction") == everyone_told_once()
    assert [str(m["To"]) for m in marked(stack, f"<{request_id}.rights_confirmation-")] == [EMAIL]
    assert request_state(rt, request_id) == (RequestStatus.COMPLETED, "restricted")

    # Not before the subject was told (Art. 18(3)) ...
    with pytest.raises(BadInput, match="tell the subject first"):
        lift_restriction(request_id, OPERATOR)
    # ... nor before the day they were told
    letters.announce_lift(rt, request_id, lift_on=today() + timedelta(days=1), today=today())
    with pytest.raises(BadInput, match="wait until then"):
        lift_restriction(request_id, OPERATOR)
    assert events(rt, request_id, "restriction.lifting") == []
    assert hubspot_props(stack, contact)["dsar_processing_restricted"] == "true"
    assert art19(stack, "restriction_lifted") == {}

    # Told again, that it ends today (the command line refuses a day in the past)
    env = cli_env(rt, stack)
    runner = CliRunner()
    yesterday = (today() - timedelta(days=1)).isoformat()
    refused = runner.invoke(
        dsar_app, ["restriction", "announce-lift", request_id, "--on", yesterday], env=env
    )
    assert refused.exit_code == 2
    told = runner.invoke(
        dsar_app, ["restriction", "announce-lift", request_id, "--on", today().isoformat()], env=env
    )
    assert told.exit_code == 0, told.output
    with Operator(answer, poll_s=0.3) as operator:
        lift_restriction(request_id, OPERATOR)

    assert hubspot_props(stack, contact)["dsar_processing_restricted"] == "false"
    assert [uid for uid, u in zendesk.users.items() if "dsar_restricted" in u["tags"]] == []
    assert not any(r["processing_restricted"] for r in app_db_rows(stack, customers))
    assert not any(r["processing_restricted"] for r in app_db_rows(stack, orders))
    assert sorted(k for k in operator.answered if k.startswith("restriction-lifted-")) == sorted(
        f"restriction-lifted-{name}" for name in BY_HAND
    )
    assert art19(stack, "restriction_lifted") == everyone_told_once()
    # The subject heard of it before any recipient did
    order = [str(m["Message-ID"]) for m in stack.mailbox.messages]
    notices = [i for i, mid in enumerate(order) if f"<{request_id}.restriction_lift_notice-" in mid]
    lifted = [i for i, mid in enumerate(order) if ".art19-restriction_lifted." in mid]
    assert len(notices) == 2  # tomorrow, then today
    assert all(str(stack.mailbox.messages[i]["To"]) == EMAIL for i in notices)
    assert max(notices) < min(lifted)
    assert len(events(rt, request_id, "restriction.lifted")) == 1
    assert [e["operator"] for e in events(rt, request_id, "restriction.lifting")] == [OPERATOR]
    lifted_in = [
        e["system"] for e in events(rt, request_id, "system.applied") if e["right"] == "restriction_lifted"
    ]
    assert sorted(lifted_in) == sorted(WITH_API)


# ---- objection to direct marketing (Art. 21(2)) and consent withdrawn (Art. 7(3)) -------------


def test_an_objection_unsubscribes_where_there_is_marketing_and_keeps_the_objection(
    rt: Runtime, stack: EmulatorStack
) -> None:
    customer_id = kari_customer_id(stack)
    zendesk_requests = stack.states["zendesk-support"].faults.requests
    assert stack.hubspot.subscription_status(EMAIL)[NEWSLETTER] == "SUBSCRIBED"
    request_id = submit(rt, "objection")

    with Operator(answer, poll_s=0.3) as operator:
        assert objection_request(request_id) is not None

    assert set(stack.hubspot.subscription_status(EMAIL).values()) == {"NOT_SUBSCRIBED"}
    assert stack.hubspot.subscription_status(OTHER_EMAIL)[NEWSLETTER] == "SUBSCRIBED"  # others stay
    assert not [r for r in app_db_rows(stack, newsletter_subscriptions) if r["email"].lower() == EMAIL]
    assert [r for r in app_db_rows(stack, newsletter_subscriptions) if r["email"] == OTHER_EMAIL]
    opted_in = {r["id"]: r["marketing_opt_in"] for r in app_db_rows(stack, customers)}
    assert opted_in.pop(customer_id) is False
    assert all(opted_in.values())
    assert kari_customer(stack, customer_id)["full_name"] == NAME  # the customer stays a customer

    # Systems without direct marketing are not concerned: not called, no form, no mail
    status = statuses(rt, request_id)
    assert {name: status[name] for name in MARKETING} == dict.fromkeys(MARKETING, SystemStatus.APPLIED)
    unconcerned = set(status) - set(MARKETING)
    assert unconcerned == {"zendesk-support", *BY_HAND}
    assert {status[name] for name in unconcerned} == {SystemStatus.NOT_APPLICABLE}
    assert operator.answered == []
    assert stack.states["zendesk-support"].faults.requests == zendesk_requests
    assert [str(m["Message-ID"]) for m in stack.mailbox.messages if ".art19-" in str(m["Message-ID"])] == []
    assert stack.mailbox.to(RECIPIENTS["link-mobility"]) == []
    assert [str(m["To"]) for m in marked(stack, f"<{request_id}.rights_confirmation-")] == [EMAIL]
    assert request_state(rt, request_id) == (RequestStatus.COMPLETED, "objection_honoured")

    # The objection is remembered, whatever the form of the identifier asked about
    assert is_suppressed(rt, email=EMAIL)
    assert is_suppressed(rt, email="  KARI.Nordmann@EXAMPLE.no ")
    assert is_suppressed(rt, phone=PHONE)
    assert is_suppressed(rt, phone="912 34 567")
    assert is_suppressed(rt, phone="+47 912 34 567")
    assert not is_suppressed(rt, email=OTHER_EMAIL)
    assert not is_suppressed(rt, phone=OTHER_PHONE)
    assert not is_suppressed(rt)
    [added] = events(rt, request_id, "suppression.added")
    assert (added["reason"], added["entries"], sorted(added["identifiers"])) == (
        "objection",
        2,
        ["email", "phone"],
    )

    # ... and the command line answers yes or no, nothing more
    env, runner = cli_env(rt, stack), CliRunner()
    for email, expected in (("Kari.Nordmann@Example.no", "suppressed"), (OTHER_EMAIL, "not suppressed")):
        result = runner.invoke(dsar_app, ["suppression", "check", "--email", email], env=env)
        assert (result.exit_code, result.stdout.strip()) == (0, expected), result.output
    by_phone = runner.invoke(dsar_app, ["suppression", "check", "--phone", "912 34 567"], env=env)
    assert (by_phone.exit_code, by_phone.stdout.strip()) == (0, "suppressed")
    invalid = runner.invoke(dsar_app, ["suppression", "check", "--email", "not-an-address"], env=env)
    assert invalid.exit_code == 2
    assert invalid.stdout == ""  # no answer at all: only the one-line reason on stderr
    assert "e-mail address is not valid" in invalid.stderr


def test_withdrawn_consent_is_kept_as_keyed_hashes_that_outlive_the_erasure_of_her_data(
    rt: Runtime, stack: EmulatorStack
) -> None:
    request_id = submit(rt, "objection", withdraws_consent=True)
    with Operator(answer, poll_s=0.3):
        assert objection_request(request_id) is not None
    assert set(stack.hubspot.subscription_status(EMAIL).values()) == {"NOT_SUBSCRIBED"}
    assert [e["reason"] for e in events(rt, request_id, "suppression.added")] == ["consent_withdrawn"]

    # Later she has her data erased everywhere
    erasure_id = submit(rt, "erasure")
    with Operator(answer, poll_s=0.3):
        assert erasure_request(erasure_id) is not None
    with rt.ledger.session() as session:
        assert repo.get_request(session, erasure_id).status is RequestStatus.COMPLETED
    assert not [c for c in stack.hubspot.objects["contacts"].values() if c.properties.get("email") == EMAIL]

    # The objection still stands, and the list holds no identifier anyone could read back
    assert is_suppressed(rt, email=EMAIL)
    assert is_suppressed(rt, phone=PHONE)
    assert not is_suppressed(rt, email=OTHER_EMAIL, phone=OTHER_PHONE)
    with rt.ledger.session() as session:
        entries = [
            (s.key, s.reason, s.request_id, str(s.created_at)) for s in session.scalars(select(Suppression))
        ]
    assert sorted(key.split(":")[0] for key, *_ in entries) == ["email", "phone"]
    assert all(re.fullmatch(r"(email|phone):[0-9a-f]{64}", key) for key, *_ in entries)
    assert {(reason, rid) for _, reason, rid, _ in entries} == {("consent_withdrawn", request_id)}
    flat = repr(entries).lower()
    for clear in (EMAIL, PHONE, PHONE.removeprefix("+47"), "912 34 567", NAME.lower(), "nordmann"):
        assert clear.lower() not in flat


# ---- a vendor down during a right, then back -------------------------------------------------


def test_a_vendor_down_leaves_the_request_incomplete_and_a_rerun_finishes_without_doing_anything_twice(
    rt: Runtime, stack: EmulatorStack
) -> None:
    contact = hubspot_contact(stack, EMAIL)
    request_id = submit(rt, "restriction")

    def down_after_look_up(key: str) -> dict[str, object]:
        if key == "look-up-link-mobility":  # every system was looked up: HubSpot now fails for good
            stack.hubspot.set_faults({"server_error_next": -1})
        return answer(key)

    with (
        Operator(down_after_look_up, poll_s=0.3),
        pytest.raises(Exception, match="no definite answer from hubspot-crm"),
    ):
        restriction_request(request_id)

    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        row = {r.system: r for r in request.systems}["hubspot-crm"]
        assert request.status is RequestStatus.INCOMPLETE
        assert row.status is SystemStatus.FAILED
        assert row.error is not None
        assert "hubspot-crm" in row.error
    failed = [e for e in events(rt, request_id, "system.failed") if e["system"] == "hubspot-crm"]
    assert failed
    assert {e["step"] for e in failed} == {"restriction"}
    assert hubspot_props(stack, contact).get("dsar_processing_restricted") != "true"
    assert (
        kari_customer(stack, kari_customer_id(stack))["processing_restricted"] is True
    )  # the others went on
    assert art19(stack, "restriction") == {}  # nobody is told of a restriction not yet carried out
    assert marked(stack, f"<{request_id}.rights_confirmation-") == []

    stack.hubspot.set_faults({"server_error_next": 0})
    with Operator(answer, poll_s=0.3) as operator:
        assert restriction_request(request_id) is not None

    assert operator.answered == []  # every form was answered in the first run
    assert hubspot_props(stack, contact)["dsar_processing_restricted"] == "true"
    applied = Counter(e["system"] for e in events(rt, request_id, "system.applied"))
    assert applied == dict.fromkeys(WITH_API, 1)
    answered = Counter(e["system"] for e in events(rt, request_id, "system.operator_answered"))
    assert answered == {**dict.fromkeys(BY_HAND, 1), "link-mobility": 2}  # its look-up, then the restriction
    assert art19(stack, "restriction") == everyone_told_once()
    assert len(marked(stack, f"<{request_id}.rights_confirmation-")) == 1
    assert request_state(rt, request_id) == (RequestStatus.COMPLETED, "restricted")

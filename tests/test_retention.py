"""Retention: the rules' dates, the plan, and the job that ends what erasures kept.

The rules are pure date arithmetic. The job runs under Prefect against emulated systems over
real HTTP and SQL, with the ledger on SQLite and PostgreSQL; mail goes to the loopback SMTP
mailbox. The claim that keeps two runs apart is also checked on MariaDB. The commands are
run in-process through typer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from typer.testing import CliRunner

from dsar import intake
from dsar.cli import app
from dsar.holds import place_hold, release_hold
from dsar.ledger.chain import verify_chain
from dsar.ledger.models import Event, OutboxMail, RetainedData
from dsar.retention import (
    PRESETS,
    CategoryPlan,
    RetentionRule,
    add_months,
    financial_year_end,
    hold_basis,
    plan_system,
)
from dsar.runtime import Runtime, using
from emulators.demo_data import DEMO_SUBJECT
from emulators.stack import EmulatorStack, emulator_stack
from flows.retention import RetentionFailed, retention
from integrations.base import ErasureOutcome, LookupResult, Subject, System
from tasks import retention as job
from tests.conftest import flow_settings, make_settings
from tests.databases import make_database_url
from tests.identity_helpers import confirm_identity

PAST, FUTURE = date(2020, 1, 31), date(2099, 12, 31)
BASIS = "GDPR Art. 17(3)(b); bokføringsloven § 13 (test)"
PRIVACY = "personvern@fjordlys.example"


# --- the rules' dates ----------------------------------------------------------------------------

PRIMARY = RetentionRule(categories=("invoice",), action="retain", preset="bokforingsloven-primary")
SECONDARY = RetentionRule(categories=("order",), action="retain", preset="bokforingsloven-secondary")


def test_the_modules_example_calendar_financial_year() -> None:
    erased = date(2025, 3, 15)
    assert financial_year_end(erased) == date(2025, 12, 31)
    assert PRIMARY.until(erased, (12, 31)) == date(2030, 12, 31)
    assert SECONDARY.until(erased, (12, 31)) == date(2029, 6, 30)
    assert (PRESETS["bokforingsloven-primary"].months, PRESETS["bokforingsloven-secondary"].months) == (
        60,
        42,
    )


@pytest.mark.parametrize(
    ("erased", "year_end", "fy_end", "primary", "secondary"),
    [
        (date(2025, 3, 15), (6, 30), date(2025, 6, 30), date(2030, 6, 30), date(2028, 12, 31)),
        (date(2025, 6, 30), (6, 30), date(2025, 6, 30), date(2030, 6, 30), date(2028, 12, 31)),  # last day
        (date(2025, 7, 1), (6, 30), date(2026, 6, 30), date(2031, 6, 30), date(2029, 12, 31)),  # next year
        (date(2025, 12, 31), (12, 31), date(2025, 12, 31), date(2030, 12, 31), date(2029, 6, 30)),
        (date(2026, 1, 1), (12, 31), date(2026, 12, 31), date(2031, 12, 31), date(2030, 6, 30)),
        (date(2025, 3, 15), (2, 29), date(2026, 2, 28), date(2031, 2, 28), date(2029, 8, 31)),  # no 29th
        (date(2027, 3, 1), (2, 29), date(2028, 2, 29), date(2033, 2, 28), date(2031, 8, 31)),  # leap year
    ],
)
def test_non_calendar_financial_years(
    erased: date, year_end: tuple[int, int], fy_end: date, primary: date, secondary: date
) -> None:
    assert financial_year_end(erased, year_end) == fy_end
    assert PRIMARY.until(erased, year_end) == primary
    assert SECONDARY.until(erased, year_end) == secondary


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2025, 12, 31), 6, date(2026, 6, 30)),  # a month-end stays a month-end
        (date(2025, 6, 30), 6, date(2025, 12, 31)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2023, 2, 28), 12, date(2024, 2, 29)),  # the end of February is a month-end too
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2025, 1, 30), 1, date(2025, 2, 28)),  # clamped, not a month-end
        (date(2025, 1, 30), 2, date(2025, 3, 30)),
        (date(2025, 3, 15), 42, date(2028, 9, 15)),
        (date(2025, 11, 15), 2, date(2026, 1, 15)),  # across the year
    ],
)
def test_add_months_keeps_month_ends(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


def test_after_erasure_counts_from_the_erasure_day() -> None:
    rule = RetentionRule(
        categories=("cc_ticket",),
        action="retain",
        months=36,
        after="erasure",
        basis="GDPR Art. 6(1)(f) others",
    )
    assert rule.until(date(2025, 3, 15), (12, 31)) == date(2028, 3, 15)
    assert rule.until(date(2025, 3, 31), (6, 30)) == date(2028, 3, 31)  # the financial year plays no part
    assert rule.legal_basis == "GDPR Art. 6(1)(f) others"


def test_an_explicit_basis_overrides_the_presets() -> None:
    rule = RetentionRule(
        categories=("invoice",),
        action="retain",
        preset="bokforingsloven-primary",
        basis="Skatteforvaltningsloven",
    )
    assert rule.legal_basis == "Skatteforvaltningsloven"
    assert rule.until(date(2025, 3, 15), (12, 31)) == date(2030, 12, 31)  # the preset's period stands
    assert PRIMARY.legal_basis == PRESETS["bokforingsloven-primary"].basis


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"categories": ["invoice"], "action": "retain"}, "needs a preset, or both a basis and months"),
        ({"categories": ["invoice"], "action": "retain", "months": 12}, "needs a preset, or both"),
        ({"categories": ["invoice"], "action": "retain", "basis": "GDPR Art. 17(3)(b)"}, "needs a preset"),
        (
            {"categories": ["invoice"], "action": "erase", "preset": "bokforingsloven-primary"},
            "only 'retain'",
        ),
        ({"categories": ["invoice"], "action": "anonymise", "months": 12}, "only 'retain'"),
        ({"categories": ["invoice"], "action": "erase", "basis": "GDPR Art. 17(3)(b)"}, "only 'retain'"),
        ({"categories": [], "action": "erase"}, "at least 1 item"),
        ({"categories": ["x"], "action": "retain", "basis": "short", "months": 12}, "at least 8 characters"),
        (
            {"categories": ["x"], "action": "retain", "basis": "GDPR Art. 6(1)(c)", "months": 0},
            "greater than",
        ),
        (
            {"categories": ["x"], "action": "retain", "basis": "GDPR Art. 6(1)(c)", "months": 1201},
            "less than",
        ),
        ({"categories": ["x"], "action": "retain", "preset": "arkivloven"}, "bokforingsloven-primary"),
        ({"categories": ["x"], "action": "keep"}, "'erase', 'anonymise' or 'retain'"),
        ({"categories": ["x"], "action": "erase", "after": "close"}, "financial_year_end"),
        ({"categories": ["x"], "action": "erase", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_rules_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RetentionRule.model_validate(values)


def test_rules_are_frozen() -> None:
    with pytest.raises(ValidationError):
        PRIMARY.months = 1


RULES = (
    RetentionRule(categories=("customer",), action="anonymise"),
    RetentionRule(categories=("invoice", "posting"), action="retain", preset="bokforingsloven-primary"),
    RetentionRule(categories=("order",), action="retain", preset="bokforingsloven-secondary"),
    RetentionRule(categories=("contact",), action="erase"),
)


def test_plan_retains_anonymises_and_erases_by_rule() -> None:
    counts = {"invoice": 3, "customer": 1, "order": 2, "contact": 1, "note": 4, "posting": 0}
    plan = plan_system("tripletex", RULES, counts, erased_on=date(2025, 3, 15))
    assert not plan.held
    assert plan.categories == (
        CategoryPlan("contact", 1, "erase"),
        CategoryPlan("customer", 1, "anonymise"),
        CategoryPlan("invoice", 3, "retain", PRESETS["bokforingsloven-primary"].basis, date(2030, 12, 31)),
        CategoryPlan("note", 4, "erase"),  # no rule: erased
        CategoryPlan("order", 2, "retain", PRESETS["bokforingsloven-secondary"].basis, date(2029, 6, 30)),
    )  # sorted by category; nothing planned for what was not found (posting: 0)
    assert plan.rule_for("invoice") == plan.categories[2]
    assert plan.rule_for("posting") is None


def test_plan_follows_the_financial_year() -> None:
    plan = plan_system("tripletex", RULES, {"invoice": 1}, erased_on=date(2025, 7, 1), year_end=(6, 30))
    assert plan.categories[0].until == date(2031, 6, 30)


def test_a_hold_keeps_every_category_without_a_date() -> None:
    counts = {"invoice": 3, "customer": 1, "note": 2, "order": 0}
    plan = plan_system(
        "tripletex", RULES, counts, erased_on=date(2025, 3, 15), hold=(7, "Sak 24-123456TVI-OTIR")
    )
    assert plan.held
    assert plan.hold_id == 7
    basis = hold_basis(7, "Sak 24-123456TVI-OTIR")
    assert "17(3)(e)" in basis
    assert "#7" in basis
    assert plan.categories == (
        CategoryPlan("customer", 1, "hold", basis),
        CategoryPlan("invoice", 3, "hold", basis),
        CategoryPlan("note", 2, "hold", basis),
    )
    assert all(c.until is None for c in plan.categories)


def test_nothing_found_plans_nothing() -> None:
    assert plan_system("tripletex", RULES, {"invoice": 0}, erased_on=date(2025, 3, 15)).categories == ()


# --- what the job decides for each claimed row (pure) --------------------------------------------


def kept(row_id: int, category: str, until: date | None = PAST, hold: int | None = None) -> job.Kept:
    return job.Kept(row_id, category, 2, BASIS, until, hold)


def test_decide_after_an_api_erasure() -> None:
    rows = [kept(1, "customer"), kept(2, "invoice"), kept(3, "note")]
    look = job.Look(
        found={"customer": 1, "invoice": 2, "note": 2},
        erasure=ErasureOutcome("x", "delete-or-anonymise", {"customer": 1, "note": 2}, {"invoice": 2}),
    )
    got = {
        d.row.category: d.action
        for d in job.decide(rows, RULES, look, today=date(2030, 1, 1), year_end=(12, 31))
    }
    # customer was erased; the system kept the invoices again: someone must delete them by hand
    assert got == {"customer": "erased", "invoice": "due", "note": "erased"}


def test_decide_after_a_released_hold_dates_what_the_rules_retain() -> None:
    rows = [kept(1, "customer", None, 4), kept(2, "invoice", None, 4), kept(3, "contact", None, 4)]
    look = job.Look(
        found={"customer": 1, "invoice": 2},
        erasure=ErasureOutcome("x", "anonymise", {}, {"customer": 1, "invoice": 2}),
    )
    decisions = job.decide(rows, RULES, look, today=date(2026, 2, 10), year_end=(12, 31))
    got = {d.row.category: (d.action, d.until) for d in decisions}
    assert got == {
        "customer": ("anonymised", None),  # the rule anonymises and the system did: ended
        "invoice": ("kept", date(2031, 12, 31)),  # bookkeeping: five years from now on
        "contact": ("due", None),  # not found any more: not claimed erased
    }
    assert decisions[1].basis == PRESETS["bokforingsloven-primary"].basis


def test_decide_when_nothing_can_be_found() -> None:
    rows = [kept(1, "invoice"), kept(2, "order", None, 3)]
    for look in (job.Look(), job.Look(no_api=True), job.Look(not_yet=("posting",))):
        got = {d.row.category: d.action for d in job.decide(rows, RULES, look, today=PAST, year_end=(12, 31))}
        assert got == {"invoice": "due", "order": "kept"}


# --- the job, against emulated systems --------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmulatorStack]:
    with emulator_stack(tmp_path / "systems", only=("hubspot-crm", "app-db", "poweroffice-go")) as started:
        yield started


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with make_database_url(request.param) as url:
        yield url


@pytest.fixture
def rt(stack: EmulatorStack, ledger_url: str, tmp_path: Path, prefect_harness: str) -> Iterator[Runtime]:
    settings = flow_settings(
        tmp_path, ledger_url, stack.systems_file, stack.mailbox.port, alert_language="en"
    )
    runtime = Runtime.from_settings(settings)
    with using(runtime):
        yield runtime
    runtime.close()


def subject() -> Subject:
    return intake.build_subject(email=DEMO_SUBJECT.email, phone=DEMO_SUBJECT.phone, name=DEMO_SUBJECT.name)


def register(rt: Runtime) -> str:
    registered = intake.register(rt.ledger, request_type="erasure", subject=subject())
    return confirm_identity(rt.ledger, registered.request_id)


def keep(
    rt: Runtime,
    request_id: str,
    system: str,
    category: str,
    count: int,
    until: date | None,
    hold_id: int | None = None,
    basis: str = BASIS,
) -> int:
    """A row as the erasure flow writes it for what a system kept on purpose."""
    with rt.ledger.session() as session:
        row = RetainedData(
            request_id=request_id,
            system=system,
            category=category,
            count=count,
            basis=basis,
            until=until,
            hold_id=hold_id,
            status="kept",
            kept_at=datetime.now(UTC) - timedelta(days=400),
        )
        session.add(row)
        session.flush()
        return row.id


def lookup(rt: Runtime, system: str) -> LookupResult:
    client = rt.system(system)
    try:
        return client.lookup(subject())
    finally:
        client.close()


def erase_directly(rt: Runtime, system: str) -> ErasureOutcome:
    """What the erasure flow did in the system before the kept data was recorded."""
    client = rt.system(system)
    try:
        return client.erase(subject())
    finally:
        client.close()


def rows(rt: Runtime, request_id: str) -> dict[tuple[str, str], RetainedData]:
    with rt.ledger.session() as session:
        stmt = select(RetainedData).where(RetainedData.request_id == request_id)
        return {(r.system, r.category): r for r in session.scalars(stmt)}


def events(rt: Runtime, request_id: str, prefix: str = "retention.") -> list[Event]:
    with rt.ledger.session() as session:
        stmt = select(Event).where(Event.request_id == request_id).order_by(Event.seq)
        return [e for e in session.scalars(stmt) if e.kind.startswith(prefix)]


def retention_mails(stack: EmulatorStack) -> list[Any]:
    return [m for m in stack.mailbox.to(PRIVACY) if "dsar-retention." in str(m["Message-ID"])]


def test_due_data_is_erased_through_the_api_and_verified(rt: Runtime) -> None:
    request_id = register(rt)
    assert lookup(rt, "hubspot-crm").found
    assert lookup(rt, "app-db").found
    keep(rt, request_id, "hubspot-crm", "note", 3, PAST)
    keep(rt, request_id, "hubspot-crm", "email", 2, PAST)
    keep(rt, request_id, "app-db", "order", 2, FUTURE)  # not due: the system is not touched

    summary = retention()

    assert (summary["groups"], summary["erased"], summary["failed"]) == (1, 1, 0)
    assert not lookup(rt, "hubspot-crm").found  # a fresh look-up finds nothing
    assert lookup(rt, "app-db").found
    kept_rows = rows(rt, request_id)
    for category in ("note", "email"):
        row = kept_rows[("hubspot-crm", category)]
        assert (row.status, row.ended_by) == ("erased", "retention job")
        assert row.ended_at is not None
    assert kept_rows[("app-db", "order")].status == "kept"
    assert kept_rows[("app-db", "order")].ended_at is None
    [erased] = events(rt, request_id)
    assert erased.kind == "retention.erased"
    assert erased.data["system"] == "hubspot-crm"
    assert erased.data["counts"] == {"email": 2, "note": 3}
    assert sorted(erased.data["categories"]) == ["email", "note"]
    assert (erased.data["method"], erased.data["verified"]) == ("api", True)

    again = retention()  # idempotent: nothing is due any more
    assert (again["groups"], again["erased"]) == (0, 0)
    assert len(events(rt, request_id)) == 1
    with rt.ledger.session() as session:
        assert verify_chain(session, request_id).ok


def test_hold_based_rows_wait_for_the_release(rt: Runtime) -> None:
    request_id = register(rt)
    with rt.ledger.session() as session:
        hold = place_hold(
            session,
            request_id=request_id,
            system="hubspot-crm",
            reason="Tvist 24-123456TVI-OTIR",
            operator="Test operator",
            known=rt.system_names,
        )
        hold_id, basis = hold.id, hold_basis(hold.id, hold.reason)
    keep(rt, request_id, "hubspot-crm", "contact", 1, None, hold_id, basis)
    keep(rt, request_id, "hubspot-crm", "note", 3, None, hold_id, basis)
    keep(rt, request_id, "hubspot-crm", "deal", 1, PAST)  # dated and over, but the hold covers it

    assert retention()["groups"] == 0
    assert lookup(rt, "hubspot-crm").found
    assert {r.status for r in rows(rt, request_id).values()} == {"kept"}

    with rt.ledger.session() as session:  # a second hold on every system: still held after the first
        second = place_hold(
            session, request_id=request_id, system=None, reason="Tvist 2 all", operator="Op", known=[]
        ).id
        release_hold(session, hold_id=hold_id, operator="Test operator")
    assert retention()["groups"] == 0
    assert lookup(rt, "hubspot-crm").found

    with rt.ledger.session() as session:
        release_hold(session, hold_id=second, operator="Test operator")
    summary = retention()
    assert (summary["groups"], summary["erased"]) == (1, 1)
    assert not lookup(rt, "hubspot-crm").found
    assert {r.status for r in rows(rt, request_id).values()} == {"erased"}
    [erased] = events(rt, request_id)
    assert erased.data["counts"] == {"contact": 1, "deal": 1, "note": 3}


def test_a_released_hold_on_bookkeeping_data_starts_its_period(rt: Runtime, stack: EmulatorStack) -> None:
    request_id = register(rt)
    with rt.ledger.session() as session:
        hold_id = place_hold(
            session,
            request_id=request_id,
            system="poweroffice-go",
            reason="Tvist 24-99TVI-OTIR",
            operator="Test operator",
            known=rt.system_names,
        ).id
    found = lookup(rt, "poweroffice-go").counts
    assert found.get("invoice")
    assert found.get("customer")
    basis = hold_basis(hold_id, "Tvist 24-99TVI-OTIR")
    keep(rt, request_id, "poweroffice-go", "customer", found["customer"], None, hold_id, basis)
    keep(rt, request_id, "poweroffice-go", "invoice", found["invoice"], None, hold_id, basis)
    with rt.ledger.session() as session:
        release_hold(session, hold_id=hold_id, operator="Test operator")

    summary = retention(today="2026-02-10")

    assert summary["mixed"] == 1
    assert not lookup(rt, "poweroffice-go").found
    after = rows(rt, request_id)
    assert after[("poweroffice-go", "customer")].status == "erased"
    invoice = after[("poweroffice-go", "invoice")]
    assert (invoice.status, invoice.until) == ("kept", date(2031, 12, 31))  # FY 2026 + five years
    assert invoice.basis == PRESETS["bokforingsloven-primary"].basis
    assert [e.kind for e in events(rt, request_id)] == ["retention.erased", "retention.kept"]
    assert not retention_mails(stack)
    assert retention(today="2031-12-31")["groups"] == 0  # the last day it may be kept
    assert retention(today="2032-01-01")["due"] == 1  # then, unfindable: to the privacy mailbox


def test_unfindable_data_goes_to_the_privacy_mailbox_once_and_an_operator_confirms(
    rt: Runtime, stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = register(rt)
    outcome = erase_directly(rt, "poweroffice-go")  # the customer was anonymised, the invoices kept
    invoices = outcome.retained["invoice"]
    assert invoices
    assert not lookup(rt, "poweroffice-go").found
    keep(rt, request_id, "poweroffice-go", "invoice", invoices, PAST)

    first = retention()
    second = retention()

    assert (first["due"], first["mail_sent"]) == (1, 1)
    assert (second["groups"], second["mail_sent"]) == (0, 0)
    [mail] = retention_mails(stack)
    body = mail.get_content()
    assert request_id in str(mail["Subject"])
    assert "poweroffice-go" in body
    assert f'{invoices} records of category "invoice"' in body
    assert f"dsar retention confirm {request_id} --system poweroffice-go" in body
    for value in (DEMO_SUBJECT.email, DEMO_SUBJECT.name, "Nordmann", "912", "+47"):
        assert value.lower() not in (body + str(mail["Subject"])).lower()  # no personal data
    row = rows(rt, request_id)[("poweroffice-go", "invoice")]
    assert (row.status, row.ended_at) == ("due", None)  # not claimed erased
    [due] = events(rt, request_id)
    assert due.kind == "retention.due"
    assert (due.data["reason"], due.data["counts"]) == ("not_findable", {"invoice": invoices})
    assert due.data["message_id"] == str(mail["Message-ID"]).strip()
    with rt.ledger.session() as session:  # a re-queue of the same mail is a no-op
        assert session.query(OutboxMail).filter_by(kind="retention.due").count() == 1

    cli = CliEnv(rt, stack, monkeypatch)
    listed = cli("retention", "list", "--due", "--json")
    assert listed.exit_code == 0, listed.output
    assert '"status": "due"' in listed.stdout

    confirmed = cli(
        "retention", "confirm", request_id, "--system", "poweroffice-go",
        "--operator", "Ola Operatør", "--note", "Deleted the invoices in Go by hand",
    )  # fmt: skip
    assert (confirmed.exit_code, confirmed.stdout) == (0, "invoice\n")
    row = rows(rt, request_id)[("poweroffice-go", "invoice")]
    assert (row.status, row.ended_by) == ("erased", "Ola Operatør")
    manual = events(rt, request_id)[-1]
    assert manual.kind == "retention.erased"
    assert (manual.data["method"], manual.data["counts"]) == ("manual", {"invoice": invoices})
    again = cli(
        "retention", "confirm", request_id, "--system", "poweroffice-go",
        "--operator", "Ola Operatør", "--note", "Deleted the invoices in Go by hand",
    )  # fmt: skip
    assert again.exit_code == 2  # nothing waits for manual deletion any more
    assert retention_mails(stack) == [mail]


class _StillThere:
    """A client whose erasure reports success and leaves everything in place."""

    def __init__(self, inner: System) -> None:
        self.inner, self.name, self.kind = inner, inner.name, inner.kind

    def lookup(self, subject: Subject) -> LookupResult:
        return self.inner.lookup(subject)

    def erase(self, subject: Subject) -> ErasureOutcome:
        return ErasureOutcome(self.name, "pretend", {"note": 3})

    def close(self) -> None:
        self.inner.close()


def test_a_system_that_still_finds_the_subject_fails_the_run_and_keeps_the_rows(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = register(rt)
    keep(rt, request_id, "hubspot-crm", "note", 3, PAST)
    keep(rt, request_id, "app-db", "customer", 1, PAST)
    build = rt.system
    monkeypatch.setattr(
        rt, "system", lambda name: _StillThere(build(name)) if name == "hubspot-crm" else build(name)
    )

    with pytest.raises(RetentionFailed, match=f"1 of 2 systems could not be ended.*{request_id}/hubspot-crm"):
        retention()

    after = rows(rt, request_id)
    assert after[("hubspot-crm", "note")].status == "kept"  # left for the next run
    assert after[("hubspot-crm", "note")].ended_at is None
    assert after[("app-db", "customer")].status == "erased"  # the others went on
    assert not lookup(rt, "app-db").found
    failed = [e for e in events(rt, request_id) if e.kind == "retention.failed"]
    assert len(failed) == 2  # the first try and its retry
    assert failed[0].data["error"] == "hubspot-crm: RetryableError: re-check still finds 7 records"
    assert failed[0].data["categories"] == ["note"]

    monkeypatch.setattr(rt, "system", build)  # the system behaves again: the next run finishes
    assert retention()["erased"] == 1
    assert rows(rt, request_id)[("hubspot-crm", "note")].status == "erased"


def test_found_data_is_not_erased_while_other_categories_must_still_be_kept(rt: Runtime) -> None:
    request_id = register(rt)
    keep(rt, request_id, "app-db", "marketing", 1, PAST)
    keep(rt, request_id, "app-db", "order", 2, FUTURE)  # erase() would take these too

    assert retention()["due"] == 1

    assert lookup(rt, "app-db").found
    after = rows(rt, request_id)
    assert (after[("app-db", "marketing")].status, after[("app-db", "order")].status) == ("due", "kept")
    [due] = events(rt, request_id)
    assert (due.data["reason"], due.data["still_kept"]) == ("partial", ["order"])


# --- two runs at once: the claim --------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def ledger_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose systems are never called (no emulators, no Prefect)."""
    systems = tmp_path / "systems.yaml"
    systems.write_text("systems:\n  - name: app-db\n    kind: sql\n    url: sqlite:///unused.db\n")
    with make_database_url(request.param) as url:
        runtime = Runtime.from_settings(make_settings(tmp_path, ledger_url=url, systems_file=systems))
        yield runtime
        runtime.close()


def test_a_group_is_claimed_by_one_run_and_taken_over_only_when_abandoned(ledger_only: Runtime) -> None:
    rt = ledger_only
    request_id = register(rt)
    ids = {keep(rt, request_id, "app-db", c, 1, PAST) for c in ("customer", "message")}
    today = date(2026, 1, 1)

    with rt.ledger.session() as session:
        assert job.due_groups(session, today) == [(request_id, "app-db")]
    claim = job._claim(rt, request_id, "app-db", today)
    assert claim is not None
    assert set(claim.ids) == ids
    assert job._claim(rt, request_id, "app-db", today) is None  # a second run leaves it alone
    with rt.ledger.session() as session:
        assert job.due_groups(session, today) == []
        stale = claim.at - job.CLAIM_TIMEOUT - timedelta(seconds=1)
        session.execute(update(RetainedData).values(ended_at=stale))  # the first run died long ago

    takeover = job._claim(rt, request_id, "app-db", today)
    assert takeover is not None
    assert set(takeover.ids) == ids
    job._release(rt, takeover, None)
    with rt.ledger.session() as session:
        assert {r.status for r in session.scalars(select(RetainedData))} == {"kept"}
        assert job.due_groups(session, date(2020, 1, 31)) == []  # the last day it may be kept


# --- the commands --------------------------------------------------------------------------------


class CliEnv:
    """`dsar ...` in-process, with the settings of the test's runtime."""

    def __init__(self, rt: Runtime, stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch) -> None:
        s = rt.settings
        values = {
            "DSAR_VAR_DIR": str(s.var_dir),
            "DSAR_LEDGER_URL": s.ledger_url,
            "DSAR_ENCRYPTION_KEY": s.secret("encryption_key"),
            "DSAR_HASH_KEY": s.secret("hash_key"),
            "DSAR_SYSTEMS_FILE": str(stack.systems_file),
            "DSAR_SMTP_PORT": str(stack.mailbox.port),
        }
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Any:
        return self.runner.invoke(app, list(args))


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_hold_commands_and_their_exit_codes(
    rt: Runtime, stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = CliEnv(rt, stack, monkeypatch)
    request_id = register(rt)

    placed = cli(
        "hold", "place", request_id, "--reason", "Tvist 24-1TVI", "--operator", "Kim", "--system", "app-db"
    )
    assert placed.exit_code == 0, placed.output
    hold_id = int(placed.stdout)
    listed = cli("hold", "list", request_id, "--json")
    assert (listed.exit_code, '"active": true' in listed.stdout, '"system": "app-db"' in listed.stdout) == (
        0,
        True,
        True,
    )

    unknown, reason, kim = "dsar-000000000000", "Tvist 24-1TVI", ("--operator", "Kim")
    cases = [
        (("hold", "place", unknown, "--reason", reason, *kim), "no such request"),
        (("hold", "place", request_id, "--reason", "short", *kim), "8+ characters"),
        (("hold", "place", request_id, "--reason", reason, *kim, "--system", "crm"), "unknown system"),
        (("hold", "release", "999999", *kim), "no legal hold #999999"),
        (("hold", "list", unknown), "no such request"),
        (("retention", "confirm", unknown, "--system", "app-db", *kim, "--note", "x" * 9), "no such request"),
        (
            ("retention", "confirm", request_id, "--system", "app-db", *kim, "--note", "short"),
            "8+ characters",
        ),
        (("retention", "confirm", request_id, "--system", "app-db", *kim, "--note", "x" * 9), "nothing in"),
        (("retention", "run", "--today", "yesterday"), "not a valid date"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == ""

    released = cli("hold", "release", str(hold_id), "--operator", "Kim")
    assert (released.exit_code, released.stdout) == (0, f"{hold_id}\n")
    twice = cli("hold", "release", str(hold_id), "--operator", "Kim")
    assert (twice.exit_code, "released already" in twice.stderr) == (2, True)
    assert '"active": false' in cli("hold", "list", "--json").stdout
    kinds = [e.kind for e in events(rt, request_id, "hold.")]
    assert kinds == ["hold.placed", "hold.released"]


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_retention_run_and_list_from_the_command_line(
    rt: Runtime, stack: EmulatorStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = CliEnv(rt, stack, monkeypatch)
    request_id = register(rt)
    keep(rt, request_id, "app-db", "customer", 1, PAST)
    keep(rt, request_id, "hubspot-crm", "deal", 1, FUTURE)

    listed = cli("retention", "list", "--due", "--json")
    assert listed.exit_code == 0, listed.output
    assert '"category": "customer"' in listed.stdout
    assert '"category": "deal"' not in listed.stdout

    ran = cli("retention", "run")
    assert ran.exit_code == 0, ran.output
    assert '"erased": 1' in ran.stdout
    assert not lookup(rt, "app-db").found

    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    table = cli("retention", "list")
    assert table.exit_code == 0
    for value in (request_id, "hubspot-crm", "deal", "2099-12-31", "kept", "erased"):
        assert value in table.stdout
    for value in (DEMO_SUBJECT.email, "Nordmann"):
        assert value not in table.stdout


# --- the deployment ------------------------------------------------------------------------------


def test_the_job_is_deployed_nightly_in_oslo_and_served(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    from flows.retention import CRON, DEPLOYMENT, scheduled_deployment

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    declared = yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]
    [deployment] = [d for d in declared if d["entrypoint"] == "flows/retention.py:retention"]
    loaded: Any = load_flow_from_entrypoint(deployment["entrypoint"])
    assert (loaded.name, deployment["name"]) == (retention.name, DEPLOYMENT)
    assert deployment["schedules"] == [{"cron": CRON, "timezone": "Europe/Oslo"}]
    assert (deployment["concurrency_limit"], deployment["enforce_parameter_schema"]) == (1, True)
    assert list(loaded.parameters.properties) == ["today"]  # an optional date: no personal data
    assert loaded.parameters.required == []
    served = scheduled_deployment()
    assert (served.name, served.concurrency_limit) == (DEPLOYMENT, 1)
    [schedule] = [s.schedule for s in served.schedules or []]
    assert isinstance(schedule, CronSchedule)
    assert (schedule.cron, schedule.timezone) == (CRON, "Europe/Oslo")

    from dsar import deployments

    served_by_dsar_serve: list[Any] = []
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # checked, never called
    monkeypatch.setattr(deployments, "serve", lambda *d, limit: served_by_dsar_serve.extend(d))
    deployments.serve_all(limit=1)
    assert ("retention", DEPLOYMENT) in {(d.flow_name, d.name) for d in served_by_dsar_serve}


@pytest.mark.parametrize("language", ["nb", "en"])
@pytest.mark.parametrize("reason", ["not_findable", "kept_by_system", "no_api", "partial"])
def test_the_operators_mail_names_the_case_system_categories_and_counts(language: str, reason: str) -> None:
    from dsar.documents import DocumentRenderer
    from dsar.settings import PROJECT_ROOT

    rows = [
        kept(1, "invoice"),
        job.Kept(2, "order", 1, "GDPR Art. 17(3)(e) (legal hold #4: Tvist 1)", None, 4),
    ]
    subject_line, body = DocumentRenderer(PROJECT_ROOT / "templates").render_mail(
        "retention_due", language, request_id="dsar-0123456789ab", system="tripletex", rows=rows,
        reason=reason, still_kept=("posting",),
    )  # fmt: skip
    assert "dsar-0123456789ab" in subject_line
    assert "\n" not in subject_line
    assert "tripletex" in body
    assert "invoice" in body
    assert "order" in body
    assert "2020-01-31" in body
    assert "dsar retention confirm dsar-0123456789ab --system tripletex" in body
    assert ("posting" in body) == (reason == "partial")

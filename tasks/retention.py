"""The retention job's steps: find what an erasure kept that is now due, and end it system by system.

A ``retained_data`` row (see :class:`dsar.ledger.models.RetainedData`) is *due* when its status is
``kept`` and either its ``until`` lies before today (Europe/Oslo), or it was kept by a legal hold
(``until`` None) and no hold is in force on its system any more. Rows are handled per (request,
system) group:

1. **Claim.** One UPDATE turns the group's due rows from ``kept`` to ``erasing`` (``ended_at`` holds
   the claim's time while it lasts). A second, concurrent run claims nothing and leaves the group
   alone; a claim older than :data:`CLAIM_TIMEOUT` belonged to a run that died and is taken over.
2. **Look up** the subject in the system. If any kept category is still found there, **erase**
   and **look up again**: anything still found is a failure (``retention.failed``, PII-free), the
   rows go back to ``kept`` and the step raises, so the flow run ends Failed.
3. **Finish** the rows:

   * erased through the API and verified: ``erased`` (``retention.erased``, method ``api``);
   * kept by a released hold, where the register's rule retains the category (bookkeeping):
     dated from today by the rule, still ``kept`` (``retention.kept``); its period runs from now;
   * not findable any more (the system anonymised the link at erasure time, e.g. invoices in an
     accounting system), kept by the system again, a system without an API, or found while other
     categories in the system must still be kept (``erase`` would take them too): **not** claimed
     erased. They become ``due``, and one mail per request, system and set of categories asks the
     privacy mailbox to delete them by hand (``retention.due``); ``dsar retention confirm``
     records the operator's deletion (:func:`confirm_manual`).

Only request ids, system names, categories and counts reach Prefect, the events and the mail; the
subject is decrypted inside the step, used and dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from dsar import outbox, runtime
from dsar.calendar import OSLO
from dsar.errors import BadInput
from dsar.holds import active_hold
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event, as_utc
from dsar.ledger.models import RetainedData
from dsar.limits import ensure_vendor_limits, vendor_slot
from dsar.retention import RetentionRule, rule_for
from dsar.runtime import Runtime
from integrations.base import ErasureOutcome
from integrations.errors import NeedsOperator, RetryableError
from integrations.mail import Mail
from tasks.common import StepFailed, step_failure
from tasks.systems import system_step

__all__ = [
    "CLAIM_TIMEOUT",
    "DUE",
    "ERASED",
    "ERASING",
    "JOB",
    "KEPT",
    "Decision",
    "confirm_manual",
    "decide",
    "due_groups",
    "due_rows",
    "end_retention",
    "find_due_retention",
    "message_id",
    "today_in_oslo",
]

KEPT, ERASING, DUE, ERASED = "kept", "erasing", "due", "erased"
JOB = "retention job"  # ended_by of what the job ended itself
CLAIM_TIMEOUT = timedelta(hours=1)  # longer than a step can take (vendor slot wait + HTTP retries)

Outcome = Literal["erased", "due", "kept", "mixed", "skipped"]
Action = Literal["erased", "anonymised", "kept", "due"]


def today_in_oslo() -> date:
    return datetime.now(OSLO).date()


# --- which rows are due --------------------------------------------------------------------


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Kept, or claimed by a run that has not finished within CLAIM_TIMEOUT (it died)."""
    return or_(
        RetainedData.status == KEPT,
        and_(RetainedData.status == ERASING, RetainedData.ended_at < now - CLAIM_TIMEOUT),
    )


def due_rows(
    session: Session,
    today: date,
    *,
    now: datetime | None = None,
    request_id: str | None = None,
    system: str | None = None,
) -> list[RetainedData]:
    """Every row the job would end on ``today``, by request, system and category.

    Dated rows come from the ``(status, until)`` index; rows kept by a hold are few and each is
    checked against the holds in force. A system under an active hold is left alone whatever
    its rows' dates say.
    """
    now = now or datetime.now(UTC)
    stmt = select(RetainedData).where(
        _claimable(now),
        or_(RetainedData.until.is_(None), RetainedData.until < today, RetainedData.status == ERASING),
    )
    if request_id is not None:
        stmt = stmt.where(RetainedData.request_id == request_id)
    if system is not None:
        stmt = stmt.where(RetainedData.system == system)
    rows = list(session.scalars(stmt))
    held: dict[tuple[str, str], bool] = {}
    due = []
    for row in rows:
        if row.status == KEPT and row.until is None and row.hold_id is None:
            continue  # neither dated nor held: not the job's to end (an erasure still writing it)
        key = (row.request_id, row.system)
        if key not in held:
            held[key] = active_hold(session, row.request_id, row.system) is not None
        if not held[key]:
            due.append(row)
    return sorted(due, key=lambda r: (r.request_id, r.system, r.category))


def due_groups(session: Session, today: date) -> list[tuple[str, str]]:
    """The (request, system) pairs with something due on ``today``."""
    return sorted({(row.request_id, row.system) for row in due_rows(session, today)})


@task(cache_policy=NO_CACHE, persist_result=False)
def find_due_retention(today: date) -> list[tuple[str, str]]:
    """The (request id, system) pairs whose kept data is due today; ids and names only."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        groups = due_groups(session, today)
    if groups:  # every step holds a vendor slot; a fresh Prefect server has no limits yet
        ensure_vendor_limits(rt.settings.vendor_concurrency)
    get_run_logger().info("%d request x system groups of kept data are due", len(groups))
    return groups


# --- deciding what happened to each kept category --------------------------------------------


@dataclass(frozen=True)
class Kept:
    """A claimed row, as plain values."""

    id: int
    category: str
    count: int
    basis: str
    until: date | None
    hold_id: int | None

    @property
    def held(self) -> bool:
        return self.until is None


@dataclass(frozen=True)
class Decision:
    row: Kept
    action: Action
    until: date | None = None  # kept: the new last day
    basis: str | None = None  # kept: the rule's basis


@dataclass(frozen=True)
class Look:
    """What the system said: found before (kept categories only), the erasure, elsewhere, no API."""

    found: Mapping[str, int] = field(default_factory=dict)
    erasure: ErasureOutcome | None = None
    elsewhere: tuple[str, ...] = ()  # other categories the subject is found in (left alone)
    no_api: bool = False
    held: bool = False  # a hold was placed while the step ran: nothing erased
    not_yet: tuple[str, ...] = ()  # found, but other categories here must still be kept: not erased


def decide(
    rows: Sequence[Kept],
    rules: tuple[RetentionRule, ...],
    look: Look,
    *,
    today: date,
    year_end: tuple[int, int],
) -> list[Decision]:
    """What each claimed row becomes, from the look-ups and the erasure (pure; see the module doc)."""
    decisions = []
    erasure = look.erasure
    for row in rows:
        rule = rule_for(rules, row.category)
        action = rule.action if rule else "erase"
        erased_here = erasure is not None and look.found.get(row.category, 0) > 0
        kept_by_system = erased_here and bool(erasure and erasure.retained.get(row.category))
        if erased_here and not kept_by_system:
            decisions.append(Decision(row, "erased"))
        elif row.held and rule is not None and rule.action == "retain":
            until = rule.until(today, year_end)
            decisions.append(Decision(row, "kept", until=until, basis=rule.legal_basis))
        elif kept_by_system and action == "anonymise":
            decisions.append(Decision(row, "anonymised"))
        else:
            decisions.append(Decision(row, "due"))
    return decisions


# --- the step ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    request_id: str
    system: str
    at: datetime
    rows: tuple[Kept, ...]

    @property
    def ids(self) -> list[int]:
        return [row.id for row in self.rows]


class _Lost(Exception):
    """Another run claimed (part of) the group first."""


@system_step("retention")
def end_retention(request_id: str, system: str, today: date) -> str:
    """End what the request's erasure kept in one system, if it is due; returns the outcome."""
    rt = runtime.current()
    claim = _claim(rt, request_id, system, today)
    if claim is None:
        return "skipped"  # nothing due any more, held again, or another run is at it
    try:
        rules = _rules(rt, system)
        look = _look_and_erase(rt, claim)
        if look.held:
            _release(rt, claim, None)
            return "skipped"
        decisions = decide(claim.rows, rules, look, today=today, year_end=rt.settings.year_end)
        outcome = _finish(rt, claim, decisions, look)
    except Exception as exc:  # translated: the original may carry personal data
        failure = exc if isinstance(exc, StepFailed) else step_failure(system, exc)
    else:
        get_run_logger().info("%s: retention ended for %s: %s", request_id, system, outcome)
        return outcome
    _release(rt, claim, failure)
    raise failure  # outside the except block: no chained original reaches Prefect


def _claim(rt: Runtime, request_id: str, system: str, today: date) -> Claim | None:
    now = datetime.now(UTC)
    try:
        with rt.ledger.session() as session:
            rows = due_rows(session, today, now=now, request_id=request_id, system=system)
            if not rows:
                return None
            kept = tuple(Kept(r.id, r.category, r.count, r.basis, r.until, r.hold_id) for r in rows)
            stmt = (
                update(RetainedData)
                .where(RetainedData.id.in_([r.id for r in kept]), _claimable(now))
                .values(status=ERASING, ended_at=now)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], session.execute(stmt)).rowcount != len(kept):
                raise _Lost  # rolls the partial claim back
    except _Lost:
        return None
    return Claim(request_id, system, now, kept)


def _look_and_erase(rt: Runtime, claim: Claim) -> Look:
    """Look up; erase and look again when a kept category is still there."""
    with rt.ledger.session() as session:
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=claim.request_id)
    categories = {row.category for row in claim.rows}
    settings = rt.settings
    client = rt.system(claim.system)
    try:
        with vendor_slot(client.kind, settings.vendor_concurrency, settings.vendor_slot_timeout_s):
            before = client.lookup(subject)
            found = {c: n for c, n in before.counts.items() if n and c in categories}
            elsewhere = tuple(sorted(c for c, n in before.counts.items() if n and c not in categories))
            if not found:
                return Look(elsewhere=elsewhere)
            not_yet = _still_kept(rt, claim)
            if not_yet:  # erase() takes the subject's every category, also those still kept
                return Look(elsewhere=elsewhere, not_yet=not_yet)
            if _held(rt, claim):  # an operator placed a hold since the claim: erase nothing
                return Look(held=True)
            erasure = client.erase(subject)
            after = client.lookup(subject)
            if after.found:
                raise RetryableError(f"re-check still finds {after.total} records", system=claim.system)
            return Look(found=found, erasure=erasure)
    except NeedsOperator:
        return Look(no_api=True)  # no API to look or erase with: an operator deletes by hand
    finally:
        client.close()


def _still_kept(rt: Runtime, claim: Claim) -> tuple[str, ...]:
    """Categories of this request and system that are kept and not due (not in the claim)."""
    stmt = select(RetainedData.category).where(
        RetainedData.request_id == claim.request_id,
        RetainedData.system == claim.system,
        RetainedData.status == KEPT,
        RetainedData.id.not_in(claim.ids),
    )
    with rt.ledger.session() as session:
        return tuple(sorted(session.scalars(stmt)))


def _held(rt: Runtime, claim: Claim) -> bool:
    with rt.ledger.session() as session:
        return active_hold(session, claim.request_id, claim.system) is not None


def _rules(rt: Runtime, system: str) -> tuple[RetentionRule, ...]:
    register = rt.spec(system).register
    return register.retention_rules if register is not None else ()


def _release(rt: Runtime, claim: Claim, failure: StepFailed | None) -> None:
    """Give the claimed rows back (still kept); record the failure, if there was one."""
    with rt.ledger.session() as session:
        stmt = (
            update(RetainedData)
            .where(
                RetainedData.id.in_(claim.ids),
                RetainedData.status == ERASING,
                RetainedData.ended_at == claim.at,
            )
            .values(status=KEPT, ended_at=None)
            .execution_options(synchronize_session=False)
        )
        session.execute(stmt)
        if failure is not None:
            data = {
                "system": claim.system,
                "categories": sorted(row.category for row in claim.rows),
                "error": str(failure),
                "retryable": failure.retryable,
            }
            append_event(session, request_id=claim.request_id, kind="retention.failed", data=data)


def _finish(rt: Runtime, claim: Claim, decisions: Sequence[Decision], look: Look) -> Outcome:
    """Record each row's end; the mail for rows left to an operator is queued first (idempotent)."""
    due = [d.row for d in decisions if d.action == "due"]
    mail_id = _queue_due_mail(rt, claim, due, look) if due else None
    now = datetime.now(UTC)
    with rt.ledger.session() as session:
        stmt = select(RetainedData).where(RetainedData.id.in_(claim.ids)).with_for_update()
        rows = {row.id: row for row in session.scalars(stmt)}
        if len(rows) != len(claim.rows) or not all(_ours(row, claim) for row in rows.values()):
            return "skipped"  # our claim timed out and another run took the group over
        for decision in decisions:
            _apply(rows[decision.row.id], decision, now)
        _record(session, claim, decisions, look, mail_id)
    actions = {"erased" if d.action == "anonymised" else d.action for d in decisions}
    return cast(Outcome, actions.pop()) if len(actions) == 1 else "mixed"


def _ours(row: RetainedData, claim: Claim) -> bool:
    return row.status == ERASING and row.ended_at is not None and as_utc(row.ended_at) == claim.at


def _apply(row: RetainedData, decision: Decision, now: datetime) -> None:
    if decision.action in ("erased", "anonymised"):
        row.status, row.ended_at, row.ended_by = ERASED, now, JOB
    elif decision.action == "kept":
        assert decision.until is not None
        assert decision.basis is not None
        row.status, row.ended_at = KEPT, None
        row.until, row.basis = decision.until, decision.basis[:300]
    else:
        row.status, row.ended_at, row.ended_by = DUE, None, None


def _record(
    session: Session, claim: Claim, decisions: Sequence[Decision], look: Look, mail_id: str | None
) -> None:
    """One event per kind of end, with categories and counts only."""
    rid, system = claim.request_id, claim.system
    erased = [d for d in decisions if d.action in ("erased", "anonymised")]
    if erased:
        data: dict[str, object] = {
            "system": system,
            "categories": [d.row.category for d in erased],
            "counts": {d.row.category: d.row.count for d in erased},
            "method": "api",
            "vendor_method": look.erasure.method if look.erasure else None,
            "anonymised": [d.row.category for d in erased if d.action == "anonymised"],
            "verified": True,
        }
        append_event(session, request_id=rid, kind="retention.erased", data=data)
    for decision in decisions:
        if decision.action == "kept":
            data = {
                "system": system,
                "category": decision.row.category,
                "count": decision.row.count,
                "basis": decision.basis,
                "until": decision.until,
                "hold": decision.row.hold_id,
            }
            append_event(session, request_id=rid, kind="retention.kept", data=data)
    due = [d.row for d in decisions if d.action == "due"]
    if due:
        data = {
            "system": system,
            "categories": [row.category for row in due],
            "counts": {row.category: row.count for row in due},
            "reason": _why(look),
            "other_categories_found": list(look.elsewhere),
            "still_kept": list(look.not_yet),
            "message_id": mail_id,
        }
        append_event(session, request_id=rid, kind="retention.due", data=data)


def _why(look: Look) -> str:
    if look.no_api:
        return "no_api"
    if look.not_yet:
        return "partial"
    if look.erasure is not None:
        return "kept_by_system"
    return "not_findable"


# --- the operator's mail and confirmation ------------------------------------------------------


def message_id(request_id: str, system: str, categories: Iterable[str]) -> str:
    """The Message-ID of the mail about these categories (the same on every run)."""
    digest = hashlib.sha256("\n".join(sorted(categories)).encode()).hexdigest()[:12]
    return f"<dsar-retention.{request_id}.{system}.{digest}@dsar-pipeline>"


def _queue_due_mail(rt: Runtime, claim: Claim, rows: Sequence[Kept], look: Look) -> str:
    """Queue the one mail asking the privacy mailbox to delete these rows by hand."""
    settings = rt.settings
    mail_id = message_id(claim.request_id, claim.system, [row.category for row in rows])
    subject, body = rt.renderer.render_mail(
        "retention_due",
        settings.alert_language,
        request_id=claim.request_id,
        system=claim.system,
        rows=rows,
        reason=_why(look),
        still_kept=look.not_yet,
    )
    mail = Mail(to=settings.privacy_mailbox, subject=subject, body=body, message_id=mail_id)
    outbox.enqueue(rt.ledger, request_id=claim.request_id, kind="retention.due", mail=mail)
    return mail_id


def confirm_manual(
    session: Session, *, request_id: str, system: str, operator: str, note: str, now: datetime | None = None
) -> list[RetainedData]:
    """An operator deleted the ``due`` rows of one system by hand: record it (``retention.erased``)."""
    repo.get_request(session, request_id)  # raises UnknownRequest
    operator, note = " ".join(operator.split()), " ".join(note.split())
    if len(operator) < 2:
        raise BadInput("name the operator who deleted the data")
    if len(note) < 8:
        raise BadInput("say what was deleted and where (--note, 8+ characters, no personal data)")
    stmt = (
        select(RetainedData)
        .where(
            RetainedData.request_id == request_id, RetainedData.system == system, RetainedData.status == DUE
        )
        .order_by(RetainedData.category)
        .with_for_update()
    )
    rows = list(session.scalars(stmt))
    if not rows:
        raise BadInput(f"{request_id} has nothing in {system!r} waiting for manual deletion")
    moment = now or datetime.now(UTC)
    for row in rows:
        row.status, row.ended_at, row.ended_by = ERASED, moment, operator[:200]
    data = {
        "system": system,
        "categories": [row.category for row in rows],
        "counts": {row.category: row.count for row in rows},
        "method": "manual",
        "operator": operator[:200],
        "note": note[:500],
    }
    append_event(session, request_id=request_id, kind="retention.erased", data=data)
    return rows

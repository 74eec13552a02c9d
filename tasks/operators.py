"""Systems without an API: asking a named operator, and recording their answer.

When a step meets :class:`~integrations.errors.NeedsOperator`, the system's row waits for an
operator and, for a processor, the request is e-mailed to its privacy contact (through the
outbox, once). The flow then pauses with a form (:mod:`flows.operators`) that names the
request and the system, never the person; the answer is recorded here with the operator's
name, which is what makes the answer definite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import outbox, runtime
from dsar.calendar import OSLO
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Event, SystemResult, SystemStatus
from dsar.runtime import Runtime
from integrations.base import Subject
from integrations.errors import NeedsOperator
from integrations.mail import Mail, Mailer

__all__ = ["RIGHTS_STEPS", "ask_for_answer", "open_questions", "record_answer"]

# Steps of the rights other than access and erasure; their form asks "done" or "not held".
RIGHTS_STEPS = ("rectification", "restriction", "restriction_lifted", "objection")


def ask_for_answer(
    rt: Runtime, request_id: str, system: str, step: str, ask: NeedsOperator, subject: Subject
) -> None:
    """Mark the system as waiting for an operator; e-mail the processor first if there is one."""
    message_id = (
        _processor_request(rt, request_id, system, step, ask, subject) if ask.processor_contact else None
    )
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.status, row.error = SystemStatus.AWAITING_OPERATOR, None
        append_event(
            session,
            request_id=request_id,
            kind="system.awaiting_operator",
            data={
                "system": system,
                "step": step,
                "instructions": ask.instructions,
                "processor_request": message_id,
            },
        )


def _processor_request(
    rt: Runtime, request_id: str, system: str, step: str, ask: NeedsOperator, subject: Subject
) -> str:
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        request_type, due = request.type.value, repo.effective_due_date(request, datetime.now(OSLO).date())
        details = repo.load_details(session, keys=rt.ledger.keys, request_id=request_id)
    register = rt.spec(system).register
    subject_line, body = rt.renderer.render_mail(
        "processor_request",
        rt.settings.processor_language,
        vendor=register.vendor if register else system,
        request_type=request_type,
        subject=subject,
        corrections=details.get("corrections") if request_type == "rectification" else None,
        due=due,
        reply_by=due - timedelta(days=7),
        reference=request_id,
        controller=rt.controller,
    )
    # One request per processor and case: its text asks for the whole right (e.g. erasure), so
    # the later steps (erase after look-up; lifting a restriction, told by an Art. 19 notice) reuse it.
    message_id = f"<{request_id}.{system}@dsar-pipeline>"
    assert ask.processor_contact is not None
    mail = Mail(to=ask.processor_contact, subject=subject_line, body=body, message_id=message_id)
    outbox.enqueue(rt.ledger, request_id=request_id, kind="processor_request", mail=mail)
    outbox.deliver(rt.ledger, Mailer(rt.settings.smtp()), request_id=request_id)
    return message_id


@task(cache_policy=NO_CACHE, persist_result=False)
def open_questions(request_id: str) -> list[tuple[str, str, str]]:
    """The systems of the request waiting for an operator: (system, step, form description)."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        waiting = [r for r in request.systems if r.status is SystemStatus.AWAITING_OPERATOR]
        return [(r.system, *_question(session, request_id, r)) for r in waiting]


def _question(session: Session, request_id: str, row: SystemResult) -> tuple[str, str]:
    stmt = (
        select(Event)
        .where(Event.request_id == request_id, Event.kind == "system.awaiting_operator")
        .order_by(Event.seq.desc())
    )
    asked = next(e for e in session.scalars(stmt) if e.data.get("system") == row.system)
    step, instructions = asked.data["step"], asked.data["instructions"]
    mail = asked.data.get("processor_request")
    # The warning comes first: the classic UI shows only the top of a long description.
    lines = [
        f"**Request `{request_id}`**, system **{row.system}**, step **{step}**.",
        "",
        "Record the outcome and your name. Do not type the person's data into this form.",
        "",
        instructions,
    ]
    if mail:
        lines += ["", f"The processor was e-mailed (Message-ID `{mail}`); record its answer here."]
    return step, "\n".join(lines)


@task(cache_policy=NO_CACHE, persist_result=False)
def record_answer(
    request_id: str, system: str, step: str, outcome: str, operator: str, note: str, records: int
) -> str:
    """Record an operator's definite answer for a system without an API."""
    rt = runtime.current()
    now = datetime.now(UTC)
    with rt.ledger.session() as session:
        row = repo.system_result(session, request_id=request_id, system=system, kind=rt.spec(system).kind)
        row.operator, row.operator_note, row.error, row.attempts = (
            operator,
            note or None,
            None,
            row.attempts + 1,
        )
        _apply(row, step, outcome, max(records, 1), now)
        append_event(
            session,
            request_id=request_id,
            kind="system.operator_answered",
            data={"system": system, "step": step, "outcome": outcome, "operator": operator},
        )
        return row.status.value


def _apply(row: SystemResult, step: str, outcome: str, records: int, now: datetime) -> None:
    if step == "erase":
        row.status = SystemStatus.ERASED if outcome == "erased" else SystemStatus.RETAINED
        row.method, row.erased_at = "manual", now  # attested by the operator, not re-checked by us
        row.erased_counts = dict(row.counts) if outcome == "erased" else {}
        row.retained_counts = dict(row.counts) if outcome == "retained" else {}
    elif step in RIGHTS_STEPS:  # rectified / restricted / suppressed by hand, or nothing held there
        done = outcome == "done"
        row.status = SystemStatus.MANUAL if done else SystemStatus.NONE
        row.method = "manual"
        row.erased_counts = {}
    elif step == "verify":  # an operator re-checked a system erased through its API
        if outcome == "none":
            row.status, row.verified_at = SystemStatus.ERASED, now
        else:  # still there: the next run erases again
            row.status, row.error = SystemStatus.FAILED, "the operator still found data after erasure"
    else:
        row.looked_up_at = now
        found = outcome == "found"
        row.counts = {"manual": records} if found else {}
        row.status = (
            (SystemStatus.MANUAL if step == "collect" else SystemStatus.FOUND) if found else SystemStatus.NONE
        )

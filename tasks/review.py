"""Tasks of the operator's review before an answer is sent: what to ask, and recording the answer.

Redactions (GDPR Art. 15(4): another person's data in the copy) are recorded as events naming
the system, the record id and the field, never a value; the report is then rendered again.
"""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from dsar import runtime
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Event, RequestStatus
from tasks.ticketing import ZENDESK

__all__ = ["Redaction", "hold_report", "needs_review", "record_review", "review_text", "reviewed_before"]

Decision = Literal["send", "redact", "hold"]
Redaction = tuple[str, str, str]  # (system, record id, field)


@task(cache_policy=NO_CACHE, persist_result=False)
def needs_review(request_id: str) -> bool:
    """Something will be sent on (the report to a Zendesk ticket): an operator looks first."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        ticket = repo.get_request(session, request_id).ticket_ref or ""
    return ticket.startswith(ZENDESK) and bool(rt.settings.ticketing_zendesk_url)


@task(cache_policy=NO_CACHE, persist_result=False)
def reviewed_before(request_id: str) -> Decision | None:
    """The decision of an earlier run that reviewed the current report (a re-run asks no one twice)."""
    with runtime.current().ledger.session() as session:
        stmt = select(Event).where(
            Event.request_id == request_id, Event.kind.in_(("report.reviewed", "document.created"))
        )
        last = session.scalars(stmt.order_by(Event.seq.desc()).limit(1)).first()
    if last is None or last.kind != "report.reviewed":
        return None  # never reviewed, or the report changed since
    decision: Decision = last.data["decision"]
    return decision if decision == "send" else None  # a held report is looked at again on a re-run


@task(cache_policy=NO_CACHE, persist_result=False)
def review_text(request_id: str, round_: int) -> str:
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        ticket = request.ticket_ref or "(no ticket)"
    lines = [
        f"**Review the answer to request `{request_id}`** before it is sent to ticket **{ticket}**"
        + (f" (round {round_ + 1})." if round_ else "."),
        "",
        "Record your name. Do not type the person's data into this form.",
        "",
        f"Open the report with `dsar documents {request_id}`. *send*: attach it to the ticket. "
        "*redact*: another person's data must be hidden first (GDPR Art. 15(4)): list each as "
        "`system/record id/field`; the report is rendered again and comes back to you. "
        "*hold*: send nothing now; the report stays for download.",
    ]
    return "\n".join(lines)


@task(cache_policy=NO_CACHE, persist_result=False)
def record_review(
    request_id: str, decision: Decision, operator: str, marked: list[str], note: str
) -> Decision:
    """Record the decision and each redaction; a redaction that names no field is refused."""
    parsed = [_parse(item) for item in marked]
    if decision == "redact" and not parsed:
        raise ValueError("a redaction decision needs at least one system/record id/field")
    with runtime.current().ledger.session() as session:
        for system, record_id, field in parsed:
            append_event(
                session,
                request_id=request_id,
                kind="report.redaction",
                data={"system": system, "record_id": record_id, "field": field, "operator": operator},
            )
        append_event(
            session,
            request_id=request_id,
            kind="report.reviewed",
            data={"decision": decision, "operator": operator, "redactions": len(parsed), "note": note},
        )
    return decision


def _parse(item: str) -> Redaction:
    parts = [p.strip() for p in item.strip().split("/")]
    if len(parts) != 3 or not all(parts):
        raise ValueError("write each redaction as system/record id/field")
    return parts[0], parts[1], parts[2]


@task(cache_policy=NO_CACHE, persist_result=False)
def hold_report(request_id: str) -> None:
    """The operator held the answer: the request stays open (and its deadline watched) until re-run."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        repo.set_status(
            session,
            request=request,
            status=RequestStatus.AWAITING_OPERATOR,
            checkpoint="report_held",
            note="an operator held the answer; re-run the flow to review it again",
        )

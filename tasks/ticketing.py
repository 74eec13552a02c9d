"""Tasks that write back to the ticket a request arrived in: the access report (or another stored
document, such as the portability export), as an internal note."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from dsar import document_store, runtime
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Document, Event
from dsar.runtime import Runtime
from integrations.errors import ConfigurationError
from integrations.ticketing import ZendeskTickets
from tasks.common import step_failure
from tasks.documents import ACCESS_REPORT

__all__ = ["attach_document_to_ticket", "attach_report_to_ticket"]

ZENDESK = "zendesk:"
ATTACHED, FAILED = "ticket.report_attached", "ticket.attach_failed"


@task(cache_policy=NO_CACHE, persist_result=False)
def attach_report_to_ticket(request_id: str) -> bool:
    """Attach the access report to the request's Zendesk ticket as an internal note, once; never fails."""
    return _attach_once(request_id, ACCESS_REPORT, "report_attached", ATTACHED)


@task(cache_policy=NO_CACHE, persist_result=False)
def attach_document_to_ticket(request_id: str, kind: str, mail: str) -> bool:
    """Attach the newest stored document of ``kind`` to the request's Zendesk ticket, once; never fails.

    ``mail`` names the note's templates (``templates/mail/<mail>.subject.txt.j2`` and
    ``<mail>.txt.j2``, given ``reference`` and ``filename``). Recorded as ``ticket.<kind>_attached``.
    """
    return _attach_once(request_id, kind, mail, f"ticket.{kind}_attached")


def _attach_once(request_id: str, kind: str, mail: str, attached: str) -> bool:
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        ticket_ref, language = request.ticket_ref or "", request.language
        if not ticket_ref.startswith(ZENDESK) or not rt.settings.ticketing_zendesk_url:
            return False
        if _attached_before(session, request_id, attached):
            return True
        report = _newest(session, request_id, kind)
    data: dict[str, Any] = {"ticket": ticket_ref}
    try:
        filename, size = _attach(rt, ticket_ref.removeprefix(ZENDESK), report, request_id, language, mail)
    except Exception as exc:  # the request stands; the missing attachment is on record for a human
        summary = _summary(exc)
        get_run_logger().warning("%s: attaching the %s to the ticket failed (%s)", request_id, kind, summary)
        _record(rt, request_id, FAILED, data | {"kind": kind, "error": summary})
        return False
    get_run_logger().info("%s: %s attached to the ticket (%d bytes)", request_id, kind, size)
    _record(rt, request_id, attached, data | {"document": filename, "bytes": size})
    return True


def _attached_before(session: Session, request_id: str, attached: str = ATTACHED) -> bool:
    """Whether a run before this one attached the document already."""
    query = select(exists().where(Event.request_id == request_id, Event.kind == attached))
    return bool(session.scalar(query))


def _newest(session: Session, request_id: str, kind: str = ACCESS_REPORT) -> int | None:
    """The id of the request's newest document of ``kind`` (the access report), if it has one."""
    query = (
        select(Document.id)
        .where(Document.request_id == request_id, Document.kind == kind)
        .order_by(Document.id.desc())
    )
    document_id: int | None = session.scalars(query).first()
    return document_id


def _attach(
    rt: Runtime,
    ticket_id: str,
    report: int | None,
    request_id: str,
    language: str,
    mail: str = "report_attached",
) -> tuple[str, int]:
    """Upload the document with its note; returns (file name, size). Raises whatever went wrong."""
    if report is None:
        raise ConfigurationError("no such document stored for this request")
    with rt.ledger.session() as session:
        document = session.get_one(Document, report)
        filename = Path(document.path).name.removesuffix(".enc")
        content = document_store.read(rt.ledger, document)  # DocumentGone if altered or purged
    title, body = rt.renderer.render_mail(mail, language, reference=request_id, filename=filename)
    tickets = _tickets(rt)
    try:
        tickets.attach(ticket_id, filename, content, f"{title}\n\n{body}")
    finally:
        tickets.close()
    return filename, len(content)


def _tickets(rt: Runtime) -> ZendeskTickets:
    """The Zendesk ticketing client from the settings (a test may inject its transport)."""
    s = rt.settings
    if not s.ticketing_zendesk_url or not s.ticketing_zendesk_email or s.ticketing_zendesk_token is None:
        raise ConfigurationError("set DSAR_TICKETING_ZENDESK_EMAIL and _TOKEN with _URL")
    token = s.ticketing_zendesk_token.get_secret_value()
    transport = rt.transports.get(ZendeskTickets.system)
    email = s.ticketing_zendesk_email
    return ZendeskTickets(s.ticketing_zendesk_url, email, token, rt.http_policy, transport)


def _summary(exc: Exception) -> str:
    """A PII-free line: the integration's summary, this module's fixed reasons, else the class name."""
    if isinstance(exc, ConfigurationError | document_store.DocumentGone):
        return f"{ZendeskTickets.system}: {type(exc).__name__}: {exc}"
    return str(step_failure(ZendeskTickets.system, exc))


def _record(rt: Runtime, request_id: str, kind: str, data: dict[str, Any]) -> None:
    with rt.ledger.session() as session:
        append_event(session, request_id=request_id, kind=kind, data=data)

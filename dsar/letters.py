"""Letters: the extension notice, the refusal, the identity request, the notice to a customer.

Each letter is a PDF from ``templates/letters/letter.html.j2`` in the request's language, kept
encrypted with the request's documents, an event in its chain, and (to the data subject) sent
by e-mail through the outbox with the same wording. The operator's reasons are quoted as given:
they are written for the subject, so they must hold no one else's personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

from sqlalchemy.orm import Session

from dsar import document_store, outbox
from dsar.errors import BadInput
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Request, RequestStatus
from dsar.runtime import Runtime
from integrations.mail import Mail, Mailer

__all__ = [
    "Letter",
    "LetterKind",
    "announce_lift",
    "confirm_right",
    "extend",
    "notify_controller_customer",
    "refuse",
    "render",
]

LetterKind = Literal[
    "extension_notice",
    "refusal",
    "partial_refusal",
    "identity_information",
    "processor_notice",
    "rights_confirmation",
    "restriction_lift_notice",
]
MIN_REASONS = 20  # "refuse" and "extend" need a written justification (Art. 12(4), 12(5))


@dataclass(frozen=True)
class Letter:
    kind: LetterKind
    request_id: str
    request_type: str
    language: str
    received: date
    due: date
    issued: date
    reasons: str | None = None
    new_due: date | None = None
    recipient: str | None = None  # a customer's name (processor notice)
    outcomes: tuple[tuple[str, str], ...] = ()  # (system, outcome) for a rights confirmation
    lift_on: date | None = None  # when a restriction will be lifted (Art. 18(3))


def render(rt: Runtime, letter: Letter) -> bytes:
    html = rt.renderer.render_page(
        "letters/letter.html.j2",
        letter.language,
        letter=letter,
        controller=rt.controller,
        document_id=letter.request_id,
    )
    return rt.renderer.to_pdf(html)


def extend(rt: Runtime, request_id: str, *, reasons: str, today: date) -> str:
    """Extend the deadline by two months (Art. 12(3)); only within the first month, with reasons."""
    reasons = _justified(reasons)
    with rt.ledger.session() as session:
        request = _open(session, request_id)
        if request.extended:
            raise BadInput(f"{request_id} was extended already")
        first_month_ends = repo.effective_due_date(request, today)
        if today > first_month_ends:
            raise BadInput(
                f"the first month ended on {first_month_ends}; an extension must be notified within it"
            )
        old_due = first_month_ends
        request.extended, request.extension_reason = True, reasons
        new_due = repo.effective_due_date(request, today)
        append_event(
            session,
            request_id=request_id,
            kind="request.extended",
            data={"old_due": old_due.isoformat(), "new_due": new_due.isoformat()},
        )
        letter = _letter(request, "extension_notice", today, reasons=reasons, due=old_due, new_due=new_due)
    return _issue(rt, letter)


def refuse(rt: Runtime, request_id: str, *, reasons: str, partial: bool, today: date) -> str:
    """Refuse (close the request) or refuse in part (the answer goes on); reasons are required."""
    reasons = _justified(reasons)
    kind: LetterKind = "partial_refusal" if partial else "refusal"
    with rt.ledger.session() as session:
        request = _open(session, request_id)
        letter = _letter(request, kind, today, reasons=reasons)
        append_event(session, request_id=request_id, kind=f"request.{kind}", data={"partial": partial})
        if not partial:
            repo.set_status(
                session, request=request, status=RequestStatus.CLOSED, checkpoint="refused", note="refused"
            )
    return _issue(rt, letter)


def notify_controller_customer(
    rt: Runtime, request_id: str, *, customer: str, customer_email: str, today: date
) -> str:
    """We are only the customer's processor: tell the customer (the controller), record it, act no further."""
    with rt.ledger.session() as session:
        request = _open(session, request_id)
        letter = _letter(request, "processor_notice", today, recipient=customer)
        append_event(session, request_id=request_id, kind="request.forwarded_to_controller", data={})
    return _issue(rt, letter, to=customer_email)


def confirm_right(
    rt: Runtime, request_id: str, *, outcomes: list[tuple[str, str]], today: date, to: str | None = None
) -> str:
    """Tell the subject what was done, system by system (rectification, restriction, objection).

    ``to``: another address of the subject's (a corrected e-mail: the old one may be gone).
    """
    with rt.ledger.session() as session:
        letter = _letter(_open(session, request_id), "rights_confirmation", today, outcomes=tuple(outcomes))
    return _issue(rt, letter, to=to)


def announce_lift(rt: Runtime, request_id: str, *, lift_on: date, today: date) -> str:
    """Art. 18(3): the subject is told before a restriction is lifted."""
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        letter = _letter(request, "restriction_lift_notice", today, lift_on=lift_on)
        append_event(
            session,
            request_id=request_id,
            kind="restriction.lift_announced",
            data={"lift_on": lift_on.isoformat()},
        )
    return _issue(rt, letter)


def _justified(reasons: str) -> str:
    text = " ".join(reasons.split())
    if len(text) < MIN_REASONS:
        raise BadInput(f"write the reasons out (at least {MIN_REASONS} characters); they go to the subject")
    return text


def _open(session: Session, request_id: str) -> Request:
    try:
        request = repo.get_request(session, request_id)
    except repo.UnknownRequest as exc:
        raise BadInput(str(exc)) from None
    if not request.status.is_open:
        raise BadInput(f"{request_id} is {request.status.value}")
    return request


def _letter(request: Request, kind: LetterKind, today: date, **values: object) -> Letter:
    base = Letter(
        kind=kind,
        request_id=request.id,
        request_type=request.type.value,
        language=request.language,
        received=request.received_date,
        due=repo.effective_due_date(request, today),
        issued=today,
    )
    return replace(base, **values)  # type: ignore[arg-type]


def _issue(rt: Runtime, letter: Letter, *, to: str | None = None) -> str:
    """Store the PDF (encrypted), mail the letter's text to the subject (or ``to``), once."""
    pdf = render(rt, letter)
    with rt.ledger.session() as session:
        document = document_store.save(
            rt.ledger,
            session,
            rt.settings.documents_path,
            request_id=letter.request_id,
            kind=letter.kind,
            content=pdf,
            suffix=".pdf",
        )
        path, document_id = document.path, document.id
        subject = repo.load_subject(session, keys=rt.ledger.keys, request_id=letter.request_id)
    address = to or subject.email
    if address:
        title, body = rt.renderer.render_mail(
            "letter", letter.language, letter=letter, controller=rt.controller, reference=letter.request_id
        )
        message_id = f"<{letter.request_id}.{letter.kind}-{document_id}@dsar-pipeline>"
        mail = Mail(to=address, subject=title, body=body, message_id=message_id)
        outbox.enqueue(rt.ledger, request_id=letter.request_id, kind=letter.kind, mail=mail)
        outbox.deliver(rt.ledger, Mailer(rt.settings.smtp()), request_id=letter.request_id)
    return path

"""Requests about data we hold only as a customer's processor: the customer (the controller) decides.

A request registered with a ``controller`` in its details is not carried out here: the customer
gets the processor notice letter (``dsar.letters.notify_controller_customer``), the request is
recorded as forwarded and closed. Bookkeeping periods of our own are never applied to a
customer's data (legal.md section 5: the customer is the one obliged to keep it).
"""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select

from dsar import letters, outbox, runtime
from dsar.calendar import OSLO
from dsar.ledger import repository as repo
from dsar.ledger.models import Document, OutboxMail, RequestStatus
from integrations.mail import Mailer

__all__ = ["forward_to_controller"]

NOTICE = "processor_notice"  # the letter's kind, as a document and as a mail


@task(cache_policy=NO_CACHE, persist_result=False)
def forward_to_controller(request_id: str) -> str | None:
    """The letter's path when the request belongs to a customer's data; None otherwise."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        controller = repo.load_details(session, keys=rt.ledger.keys, request_id=request_id).get("controller")
        sent = session.scalars(
            select(Document.path).where(Document.request_id == request_id, Document.kind == NOTICE)
        ).first()
        queued = session.scalar(
            select(OutboxMail.id).where(OutboxMail.request_id == request_id, OutboxMail.kind == NOTICE)
        )
    if not controller:
        return None
    if sent is not None and queued is not None:  # a resumed run: the letter went out already
        outbox.deliver(rt.ledger, Mailer(rt.settings.smtp()), request_id=request_id)
        path = sent
    else:
        path = letters.notify_controller_customer(
            rt,
            request_id,
            customer=controller["name"],
            customer_email=controller["email"],
            today=datetime.now(OSLO).date(),
        )
    with rt.ledger.session() as session:
        repo.set_status(
            session,
            request=repo.get_request(session, request_id),
            status=RequestStatus.COMPLETED,
            checkpoint="forwarded",
            note="forwarded to the controller",
        )
    return path

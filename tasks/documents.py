"""Tasks that turn the ledger's record of a request into the documents the subject receives.

The access report carries the portability export (Art. 20) as an attached zip, which is also
kept on its own; the deletion certificate is signed (PAdES). Both are stored encrypted
(:mod:`dsar.document_store`), and a resumed run returns what an earlier run made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar import document_store, recipients, runtime
from dsar.calendar import OSLO
from dsar.documents import (
    AccessReport,
    DeletionCertificate,
    ErasureSection,
    KeptData,
    RecipientNotice,
    SystemSection,
)
from dsar.export import attach_to_pdf, build_export
from dsar.ledger import repository as repo
from dsar.ledger.chain import chain_head
from dsar.ledger.models import Document, Event, Request, RetainedData, SystemResult, SystemStatus
from dsar.runtime import Runtime
from integrations.base import Record

__all__ = [
    "ACCESS_REPORT",
    "DELETION_CERTIFICATE",
    "PORTABILITY_EXPORT",
    "redactions",
    "render_access_report",
    "render_deletion_certificate",
]

ACCESS_REPORT = "access_report"
DELETION_CERTIFICATE = "deletion_certificate"
PORTABILITY_EXPORT = "portability_export"


@task(cache_policy=NO_CACHE, persist_result=False)
def render_access_report(request_id: str, revision: int = 0) -> str:
    """Render the access report (with its export) from what every system returned; returns its path.

    ``revision`` n asks for the report's (n+1)-th version: after an operator marked redactions.
    """
    return _render_once(request_id, ACCESS_REPORT, _access_report_pdf, revision)


@task(cache_policy=NO_CACHE, persist_result=False)
def render_deletion_certificate(request_id: str) -> str:
    """Render and sign the deletion certificate from the ledger (counts only); returns its path."""
    return _render_once(request_id, DELETION_CERTIFICATE, _certificate_pdf)


Builder = Callable[[Runtime, Session, Request], bytes]


def _render_once(request_id: str, kind: str, build: Builder, revision: int = 0, suffix: str = ".pdf") -> str:
    """Render, store and record one document; a resumed run returns the one already made."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        made = _made(session, request_id, kind)
        if len(made) > revision and _intact(rt, made[-1]):
            return made[-1].path
        content = build(rt, session, request)
        document = _save(rt, session, request.id, kind, content, suffix)
        get_run_logger().info("%s: %s rendered (%d bytes)", request.id, kind, len(content))
        return document.path


def _access_report_pdf(rt: Runtime, session: Session, request: Request) -> bytes:
    """The report laid out in chunks, with the portability export attached (and kept on its own)."""
    report = _access_report(rt, session, request)
    pdf = rt.renderer.render_access_report_pdf(report)
    export = build_export(
        request.id,
        [(s.system, _visible(s, report)) for s in report.systems if s.status in ("found", "manual")],
        generated_at=datetime.now(UTC),
        language=request.language,
        templates_dir=rt.settings.templates_dir,
    )
    _save(rt, session, request.id, PORTABILITY_EXPORT, export, ".zip")
    return attach_to_pdf(pdf, export, f"portability-export-{request.id}.zip")


def _save(rt: Runtime, session: Session, request_id: str, kind: str, content: bytes, suffix: str) -> Document:
    folder = rt.settings.documents_path
    return document_store.save(
        rt.ledger, session, folder, request_id=request_id, kind=kind, content=content, suffix=suffix
    )


def _visible(section: SystemSection, report: AccessReport) -> list[Record]:
    """The records as the report shows them: redacted fields (Art. 15(4)) are left out of the export."""
    return [
        Record(
            category=r.category,
            record_id=r.record_id,
            fields={
                k: v for k, v in r.fields.items() if not report.is_redacted(section.system, r.record_id, k)
            },
        )
        for r in section.records
    ]


def redactions(session: Session, request_id: str) -> frozenset[tuple[str, str, str]]:
    """Every (system, record id, field) an operator marked as another person's data."""
    stmt = select(Event.data).where(Event.request_id == request_id, Event.kind == "report.redaction")
    return frozenset((d["system"], d["record_id"], d["field"]) for d in session.scalars(stmt))


def _access_report(rt: Runtime, session: Session, request: Request) -> AccessReport:
    """What the access report shows: every system's answer with its processing-register facts.

    Render it with ``rt.renderer.render_access_report_pdf`` (chunked, in worker processes).
    """
    today = _today()
    return AccessReport(
        request_id=request.id,
        language=request.language,
        controller=rt.controller,
        subject_name=repo.load_subject(session, keys=rt.ledger.keys, request_id=request.id).name,
        received=request.received_date,
        due=repo.effective_due_date(request, today),
        answered=today,
        systems=tuple(_access_section(rt, row) for row in request.systems),
        redactions=redactions(session, request.id),
    )


def _certificate_pdf(rt: Runtime, session: Session, request: Request) -> bytes:
    """The certificate, signed with the controller's key (PAdES): ``dsar verify-certificate`` checks it."""
    from dsar.signing import load_signing_identity, sign_pdf  # pyHanko: only where a certificate is made

    pdf = rt.renderer.to_pdf(_certificate_html(rt, session, request))
    s = rt.settings
    return sign_pdf(
        pdf,
        load_signing_identity(s),
        reason="Deletion certificate (GDPR Art. 17)",
        location=s.controller_address,
        contact=s.controller_email,
    )


def _certificate_html(rt: Runtime, session: Session, request: Request) -> str:
    today = _today()
    kept: dict[str, tuple[KeptData, ...]] = {}
    stmt = select(RetainedData).where(RetainedData.request_id == request.id).order_by(RetainedData.id)
    for row in session.scalars(stmt):
        kept[row.system] = (
            *kept.get(row.system, ()),
            KeptData(row.category, row.count, row.basis, row.until),
        )
    certificate = DeletionCertificate(
        request_id=request.id,
        language=request.language,
        controller=rt.controller,
        received=request.received_date,
        due=repo.effective_due_date(request, today),
        completed=today,
        systems=tuple(_erasure_section(rt, row, kept.get(row.system, ())) for row in request.systems),
        chain_hash=chain_head(session, request.id),
        recipients=tuple(
            RecipientNotice(n.vendor, n.contact, n.systems, n.sent_at.astimezone(OSLO).date())
            for n in recipients.notices(session, request.id)
            if n.action == "erasure" and n.sent_at is not None
        ),
    )
    return rt.renderer.render_certificate(certificate)


def _today() -> date:
    return datetime.now(OSLO).date()


def _access_section(rt: Runtime, row: SystemResult) -> SystemSection:
    records: tuple[Record, ...] = ()
    if row.payload_ciphertext is not None:
        records = tuple(Record(**item) for item in rt.ledger.keys.cipher.decrypt_json(row.payload_ciphertext))
    register = next((spec.register for spec in rt.specs if spec.name == row.system), None)
    return SystemSection(
        system=row.system,
        kind=row.kind,
        status=row.status.value,
        counts=dict(row.counts),
        records=records,
        error=row.error,
        register=register,
    )


_OUTCOME = {
    SystemStatus.ERASED: "erased",
    SystemStatus.NONE: "none",
    SystemStatus.RETAINED: "retained",
    SystemStatus.MANUAL: "manual",
}


def _erasure_section(rt: Runtime, row: SystemResult, kept: tuple[KeptData, ...]) -> ErasureSection:
    outcome = _OUTCOME.get(row.status, "failed")
    counts = row.erased_counts if row.status is SystemStatus.ERASED else row.counts
    return ErasureSection(
        system=row.system,
        kind=row.kind,
        outcome=outcome,
        method=row.method,
        counts=dict(counts),
        completed_at=row.verified_at or row.erased_at,
        verified=row.verified_at is not None,
        error=row.error,
        retained=dict(row.retained_counts),
        operator=row.operator,
        register=next((spec.register for spec in rt.specs if spec.name == row.system), None),
        kept=kept,
    )


def _made(session: Session, request_id: str, kind: str) -> list[Document]:
    """The versions of a document made for this request, oldest first (purged ones excluded)."""
    stmt = select(Document).where(
        Document.request_id == request_id, Document.kind == kind, Document.purged_at.is_(None)
    )
    return list(session.scalars(stmt.order_by(Document.id)))


def _intact(rt: Runtime, document: Document) -> bool:
    """The stored file is there and matches its digest (a resumed run renders nothing twice)."""
    try:
        document_store.read(rt.ledger, document)
    except document_store.DocumentGone:
        return False
    return True

"""Tasks that turn the ledger's record of a request into the documents the subject receives."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from dsar import runtime
from dsar.calendar import OSLO
from dsar.documents import AccessReport, DeletionCertificate, ErasureSection, SystemSection
from dsar.ledger import repository as repo
from dsar.ledger.chain import chain_head
from dsar.ledger.models import Document, Request, SystemResult, SystemStatus
from dsar.runtime import Runtime
from integrations.base import Record

__all__ = ["ACCESS_REPORT", "DELETION_CERTIFICATE", "render_access_report", "render_deletion_certificate"]

ACCESS_REPORT = "access_report"
DELETION_CERTIFICATE = "deletion_certificate"


@task(cache_policy=NO_CACHE, persist_result=False)
def render_access_report(request_id: str) -> str:
    """Render the access report PDF from what every system returned; returns its path."""
    return _render_once(request_id, ACCESS_REPORT, _access_report_html)


@task(cache_policy=NO_CACHE, persist_result=False)
def render_deletion_certificate(request_id: str) -> str:
    """Render the deletion certificate PDF from the ledger (counts only); returns its path."""
    return _render_once(request_id, DELETION_CERTIFICATE, _certificate_html)


Builder = Callable[[Runtime, Session, Request], str]


def _render_once(request_id: str, kind: str, build: Builder) -> str:
    """Render, store and record one document; a resumed run returns the one already made."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        existing = _existing(session, request_id, kind)
        if existing:
            return existing
        return _store(rt, session, request, kind, build(rt, session, request))


def _access_report_html(rt: Runtime, session: Session, request: Request) -> str:
    today = _today()
    report = AccessReport(
        request_id=request.id,
        language=request.language,
        controller=rt.controller,
        subject_name=repo.load_subject(session, keys=rt.ledger.keys, request_id=request.id).name,
        received=request.received_date,
        due=repo.effective_due_date(request, today),
        answered=today,
        systems=tuple(_access_section(rt, row) for row in request.systems),
    )
    return rt.renderer.render_access_report(report)


def _certificate_html(rt: Runtime, session: Session, request: Request) -> str:
    today = _today()
    certificate = DeletionCertificate(
        request_id=request.id,
        language=request.language,
        controller=rt.controller,
        received=request.received_date,
        due=repo.effective_due_date(request, today),
        completed=today,
        systems=tuple(_erasure_section(row) for row in request.systems),
        chain_hash=chain_head(session, request.id),
    )
    return rt.renderer.render_certificate(certificate)


def _today() -> date:
    return datetime.now(OSLO).date()


def _access_section(rt: Runtime, row: SystemResult) -> SystemSection:
    records: tuple[Record, ...] = ()
    if row.payload_ciphertext is not None:
        records = tuple(Record(**item) for item in rt.ledger.keys.cipher.decrypt_json(row.payload_ciphertext))
    return SystemSection(
        system=row.system,
        kind=row.kind,
        status=row.status.value,
        counts=dict(row.counts),
        records=records,
        error=row.error,
    )


_OUTCOME = {
    SystemStatus.ERASED: "erased",
    SystemStatus.NONE: "none",
    SystemStatus.RETAINED: "retained",
    SystemStatus.MANUAL: "manual",
}


def _erasure_section(row: SystemResult) -> ErasureSection:
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
    )


def _existing(session: Session, request_id: str, kind: str) -> str | None:
    """A document already produced for this request (a resumed run renders nothing twice)."""
    for document in session.query(Document).filter_by(request_id=request_id, kind=kind):
        path = Path(document.path)
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == document.sha256:
            return document.path
    return None


def _store(rt: Runtime, session: Session, request: Request, kind: str, html: str) -> str:
    pdf = rt.renderer.to_pdf(html)
    folder = rt.settings.documents_path / request.id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind.replace('_', '-')}-{request.id}.pdf"
    path.write_bytes(pdf)
    digest = hashlib.sha256(pdf).hexdigest()
    repo.record_document(session, request_id=request.id, kind=kind, path=str(path.resolve()), sha256=digest)
    get_run_logger().info("%s: %s rendered (%d bytes)", request.id, kind, len(pdf))
    return str(path.resolve())

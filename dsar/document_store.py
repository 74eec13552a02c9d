"""Documents at rest: encrypted files, their digests in the ledger, and the purge when they expire.

Every document made for a request (access report, portability export, deletion certificate,
letters) is written encrypted with the ledger's Fernet key (``<kind>-<request>.<ext>.enc``); the
ledger keeps the SHA-256 of the clear bytes, so a copy handed out can be checked against it.
Documents are kept ``documents_retention_days`` after their request closed, then purged: the
file is overwritten and removed, the row marked, and the purge is an event in the request's chain.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dsar.ledger import Ledger
from dsar.ledger import repository as repo
from dsar.ledger.chain import append_event
from dsar.ledger.models import Document, Request

__all__ = ["DocumentGone", "Purge", "clear_copy", "purge_expired", "read", "save"]


class DocumentGone(LookupError):
    """The document was purged, or its file is missing or does not match its digest."""


def save(
    ledger: Ledger, session: Session, folder: Path, *, request_id: str, kind: str, content: bytes, suffix: str
) -> Document:
    """Encrypt ``content`` into ``folder/<request>/`` and record it (in ``session``'s transaction)."""
    target = folder / request_id
    target.mkdir(parents=True, exist_ok=True)
    path = _free_path(target, f"{kind.replace('_', '-')}-{request_id}", f"{suffix}.enc")
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(ledger.keys.cipher.encrypt_bytes(content))
    partial.replace(path)  # a crash never leaves half a document under the real name
    digest = hashlib.sha256(content).hexdigest()
    return repo.record_document(session, request_id=request_id, kind=kind, path=str(path), sha256=digest)


def _free_path(folder: Path, stem: str, suffix: str) -> Path:
    """``stem`` + ``suffix``, or the next ``stem-2`` ... for a newer version (a redacted report)."""
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}{suffix}"
    return path.resolve()


def read(ledger: Ledger, document: Document) -> bytes:
    """The clear bytes of a stored document, checked against the digest the ledger holds."""
    if document.purged_at is not None:
        raise DocumentGone(f"document {document.id} was purged")
    try:
        content = ledger.keys.cipher.decrypt_bytes(Path(document.path).read_bytes())
    except (OSError, ValueError) as exc:
        raise DocumentGone(f"document {document.id} cannot be read ({type(exc).__name__})") from None
    if hashlib.sha256(content).hexdigest() != document.sha256:
        raise DocumentGone(f"document {document.id} does not match its recorded digest")
    return content


def clear_copy(ledger: Ledger, document: Document, folder: Path) -> Path:
    """Write a readable copy for a person (the demo, an operator's download); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / Path(document.path).name.removesuffix(".enc")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(read(ledger, document))
    return copy


@dataclass(frozen=True)
class Purge:
    documents: int
    requests: int


def purge_expired(ledger: Ledger, *, retention: timedelta, now: datetime | None = None) -> Purge:
    """Purge the documents of requests closed longer than ``retention`` ago; idempotent."""
    cutoff = (now or datetime.now(UTC)) - retention
    with ledger.session() as session:
        stmt = (
            select(Document)
            .join(Request, Request.id == Document.request_id)
            .where(Document.purged_at.is_(None), Request.closed_at.is_not(None), Request.closed_at < cutoff)
            .order_by(Document.request_id, Document.id)
        )
        documents = list(session.scalars(stmt))
        for document in documents:
            _shred(Path(document.path))
            document.purged_at = datetime.now(UTC)
            append_event(
                session,
                request_id=document.request_id,
                kind="document.purged",
                data={"document": document.id, "kind": document.kind, "sha256": document.sha256},
            )
    return Purge(documents=len(documents), requests=len({d.request_id for d in documents}))


def _shred(path: Path) -> None:
    """Overwrite, then remove; a file already gone is fine (the purge may be re-run)."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
        path.unlink()
    except FileNotFoundError:
        return

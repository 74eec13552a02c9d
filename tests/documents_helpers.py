"""Reading back what the pipeline stored: documents are encrypted at rest."""

from __future__ import annotations

import io

import pypdf
from sqlalchemy import select

from dsar import document_store
from dsar.ledger import Ledger
from dsar.ledger.models import Document

__all__ = ["stored_bytes", "stored_pdf_text"]


def stored_bytes(ledger: Ledger, path: str) -> bytes:
    """The clear bytes of the document stored at ``path`` (as a flow returns it)."""
    with ledger.session() as session:
        document = session.scalars(select(Document).where(Document.path == path)).one()
        return document_store.read(ledger, document)


def stored_pdf_text(ledger: Ledger, path: str) -> str:
    """The PDF's text with line breaks undone (values wrap inside a record's paragraph)."""
    reader = pypdf.PdfReader(io.BytesIO(stored_bytes(ledger, path)))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return " ".join(text.replace("-\n", "-").split())

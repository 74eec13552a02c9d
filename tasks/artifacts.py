"""The operator's view of a request inside Prefect: a markdown summary artifact per request.

Ids, system names, statuses, counts, dates and document file names only: the artifact is
stored in Prefect's database and shown in its UI, where personal data must never appear.
"""

from __future__ import annotations

from datetime import datetime

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dsar import runtime
from dsar.calendar import OSLO
from dsar.ledger import repository as repo
from dsar.ledger.models import Document, Request

__all__ = ["publish_summary"]


@task(cache_policy=NO_CACHE, persist_result=False)
def publish_summary(request_id: str) -> None:
    """Publish (or update) the request's summary artifact from the ledger."""
    rt = runtime.current()
    with rt.ledger.session() as session:
        request = repo.get_request(session, request_id)
        documents = session.query(Document).filter_by(request_id=request_id).order_by(Document.id).all()
        markdown = _summary(request, documents)
    create_markdown_artifact(key=f"{request_id}-summary", markdown=markdown, description=f"{request_id}")


def _summary(request: Request, documents: list[Document]) -> str:
    today = datetime.now(OSLO).date()
    due = repo.effective_due_date(request, today)
    extended = ", extended" if request.extended else ""
    lines = [
        f"# {request.type.value.capitalize()} request `{request.id}`",
        "",
        f"Status **{request.status.value}** (checkpoint `{request.checkpoint}`), "
        f"ticket `{request.ticket_ref or '-'}`.",
        f"Received {request.received_date.isoformat()}, due **{due.isoformat()}** "
        f"({(due - today).days} days left{extended}).",
        "",
        "| system | kind | answer | found | erased | kept | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in request.systems:
        note = row.error or (f"answered by {row.operator}" if row.operator else "")
        lines.append(
            f"| {row.system} | {row.kind} | {row.status.value} | {_counts(row.counts)} | "
            f"{_counts(row.erased_counts)} | {_counts(row.retained_counts)} | {note} |"
        )
    if documents:
        lines += [
            "",
            "Documents:",
            *[f"- {d.kind}: `{d.path.rsplit('/', 1)[-1]}` (sha256 `{d.sha256[:16]}…`)" for d in documents],
        ]
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "-"

"""The portability export (GDPR Art. 20) as a document of its own: what the subject provided.

Art. 20(1) covers personal data the subject provided, processed on consent or contract; the
processing register says which categories of each system that is (``portable_categories``).
Everything else found is left out, and the export's README and manifest name it and say why.
Redactions an operator recorded in review (another person's data, Art. 20(4)) are left out
as they are from the access report.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from dsar.export import build_export
from dsar.ledger.models import Request
from dsar.runtime import Runtime
from integrations.base import Record
from tasks.documents import PORTABILITY_EXPORT, _access_report, _render_once, _visible

__all__ = ["portable_sections", "render_portability_export"]

_ANSWERED = ("found", "manual")  # the statuses whose records an export carries (as for access)


@task(cache_policy=NO_CACHE, persist_result=False)
def render_portability_export(request_id: str, revision: int = 0) -> str:
    """Build and store (encrypted) the request's portability export, once; returns its path.

    ``revision`` n asks for the export's (n+1)-th version: after an operator marked redactions.
    """
    return _render_once(request_id, PORTABILITY_EXPORT, _portability_zip, revision, suffix=".zip")


def _portability_zip(rt: Runtime, session: Session, request: Request) -> bytes:
    sections, left_out = portable_sections(rt, session, request)
    return build_export(
        request.id,
        sections,
        generated_at=datetime.now(UTC),
        language=request.language,
        templates_dir=rt.settings.templates_dir,
        left_out=left_out,
    )


def portable_sections(
    rt: Runtime, session: Session, request: Request
) -> tuple[list[tuple[str, list[Record]]], dict[str, list[str]]]:
    """Per answered system, its visible records in portable categories; and the categories left out.

    A system without a register entry has no portable categories: all it holds is left out.
    """
    report = _access_report(rt, session, request)
    sections: list[tuple[str, list[Record]]] = []
    left_out: dict[str, list[str]] = {}
    for section in report.systems:
        if section.status not in _ANSWERED:
            continue
        portable = set(section.register.portable_categories) if section.register else set()
        records = _visible(section, report)
        sections.append((section.system, [r for r in records if r.category in portable]))
        found = {r.category for r in records} | {c for c, n in section.counts.items() if n}
        if found - portable:
            left_out[section.system] = sorted(found - portable)
    return sections, left_out

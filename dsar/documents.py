"""Documents a data subject reads: the access report and the deletion certificate.

Rendering is two steps so the HTML can be tested on its own: ``render_*`` fills a jinja2
template into HTML, :meth:`DocumentRenderer.to_pdf` turns that HTML into PDF bytes.

All wording lives in ``templates/``: one translation file per language in
``templates/i18n/<lang>.yaml``, handed to the templates as ``t``. The supported languages are
exactly the files found there, so adding a language is adding a file. Date formats and month
names are in the same files; this module holds no text a reader sees.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
import weasyprint
import yaml
from markupsafe import Markup
from weasyprint.urls import URLFetcher

from integrations.base import Record

__all__ = [
    "ERASURE_OUTCOMES",
    "SYSTEM_STATUSES",
    "AccessReport",
    "Controller",
    "DeletionCertificate",
    "DocumentRenderer",
    "ErasureSection",
    "SystemSection",
]

SYSTEM_STATUSES = ("found", "none", "failed", "manual")
ERASURE_OUTCOMES = ("erased", "none", "failed", "retained", "manual")


@dataclass(frozen=True)
class Controller:
    """The company answering the request, as named on every document."""

    name: str
    org_number: str
    address: str
    email: str
    dpo_email: str | None = None


@dataclass(frozen=True)
class SystemSection:
    """What one configured system gave for an access request."""

    system: str
    kind: str
    status: str
    counts: Mapping[str, int]
    records: tuple[Record, ...]
    error: str | None = None

    def __post_init__(self) -> None:
        _check_choice("status", self.status, SYSTEM_STATUSES)


@dataclass(frozen=True)
class AccessReport:
    """Everything the access report shows."""

    request_id: str
    language: str
    controller: Controller
    subject_name: str | None
    received: date
    due: date
    answered: date
    systems: tuple[SystemSection, ...]


@dataclass(frozen=True)
class ErasureSection:
    """What an erasure request did in one configured system: categories and counts, never values."""

    system: str
    kind: str
    outcome: str
    method: str | None
    counts: Mapping[str, int]
    completed_at: datetime | None
    verified: bool
    error: str | None = None
    retained: Mapping[str, int] = field(default_factory=dict)  # kept on purpose (e.g. bookkeeping)
    operator: str | None = None  # who answered for a system without an API

    def __post_init__(self) -> None:
        _check_choice("outcome", self.outcome, ERASURE_OUTCOMES)


@dataclass(frozen=True)
class DeletionCertificate:
    """Everything the deletion certificate shows; ``chain_hash`` seals the request's event chain."""

    request_id: str
    language: str
    controller: Controller
    received: date
    due: date
    completed: date
    systems: tuple[ErasureSection, ...]
    chain_hash: str


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


class DocumentRenderer:
    """Renders the documents from ``templates_dir`` and turns their HTML into PDF."""

    def __init__(self, templates_dir: Path) -> None:
        self._dir = templates_dir.resolve()
        self._translations = _load_translations(self._dir / "i18n")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self._dir),
            # HTML is escaped; plain-text mails (*.txt.j2) are not, since no browser reads them.
            autoescape=jinja2.select_autoescape(disabled_extensions=("txt.j2",), default=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(
            date=_format_date,
            datetime=_format_datetime,
            value=_format_value,
            term=_term,
            fill=_fill,
            css_string=_css_string,
        )

    @property
    def languages(self) -> frozenset[str]:
        """The language codes a document can be rendered in."""
        return frozenset(self._translations)

    def render_access_report(self, report: AccessReport) -> str:
        """Render the Art. 15 access report as HTML."""
        return self._render("access_report.html.j2", report.language, report=report)

    def render_certificate(self, cert: DeletionCertificate) -> str:
        """Render the deletion certificate as HTML."""
        return self._render("deletion_certificate.html.j2", cert.language, cert=cert)

    def render_mail(self, name: str, language: str, **context: object) -> tuple[str, str]:
        """Render ``mail/<name>.subject.txt.j2`` (one line) and ``mail/<name>.txt.j2`` (the body)."""
        subject = self._render(f"mail/{name}.subject.txt.j2", language, **context)
        return " ".join(subject.split()), self._render(f"mail/{name}.txt.j2", language, **context)

    def render_page(self, template: str, language: str, **context: object) -> str:
        """Render an HTML page that ``dsar serve`` shows a data subject (escaped, no PDF)."""
        return self._render(template, language, **context)

    def to_pdf(self, html: str) -> bytes:
        """Lay out ``html`` as PDF; only files under the templates folder may be loaded."""
        base_url = self._dir.as_uri() + "/"
        document = weasyprint.HTML(string=html, base_url=base_url, url_fetcher=_LocalFetcher(self._dir))
        pdf: bytes = document.write_pdf()
        return pdf

    def _render(self, template: str, language: str, **context: object) -> str:
        if language not in self._translations:
            supported = ", ".join(sorted(self._translations))
            raise ValueError(f"unsupported language {language!r}; supported: {supported}")
        t = self._translations[language]
        return self._env.get_template(template).render(lang=language, t=t, **context)


class _LocalFetcher(URLFetcher):  # type: ignore[misc]
    """Loads ``file:`` URLs under one folder and refuses everything else, so nothing goes to the network."""

    def __init__(self, root: Path) -> None:
        super().__init__(allowed_protocols=("file",))
        self._root = root

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
        if not url.startswith("file:"):
            raise ValueError(f"refusing to fetch {url!r}: only local files are allowed")
        path = Path(urllib.request.url2pathname(url.split("?")[0].removeprefix("file:")))
        if not path.resolve().is_relative_to(self._root):
            raise ValueError(f"refusing to fetch {url!r}: outside the templates folder")
        return super().fetch(url, headers)


def _load_translations(folder: Path) -> dict[str, dict[str, Any]]:
    """Read every ``<lang>.yaml`` in ``folder``; all texts must be strings."""
    translations: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of phrases")
        _check_strings(data, path.name)
        translations[path.stem] = data
    if not translations:
        raise ValueError(f"no translations in {folder}")
    return translations


def _check_strings(node: object, where: str) -> None:
    """Refuse YAML surprises such as an unquoted ``no`` read as a boolean."""
    if isinstance(node, dict):
        for key, child in node.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} must be a string (quote it)")
            _check_strings(child, f"{where}:{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            _check_strings(child, f"{where}[{index}]")
    elif not isinstance(node, str):
        raise ValueError(f"{where}: {node!r} must be a string (quote it)")


@jinja2.pass_context
def _format_date(ctx: jinja2.runtime.Context, value: date) -> str:
    """A date in the language's ``date_format`` (e.g. 22.11.2026 or 22 November 2026)."""
    t = ctx["t"]
    return str(t["date_format"]).format(**_date_parts(t, value))


@jinja2.pass_context
def _format_datetime(ctx: jinja2.runtime.Context, value: datetime) -> str:
    """A moment in the language's ``datetime_format``, with its time zone name when known."""
    t = ctx["t"]
    parts = _date_parts(t, value) | {"hour": value.hour, "minute": value.minute, "tz": value.strftime("%Z")}
    return str(t["datetime_format"]).format(**parts).strip()


def _date_parts(t: Mapping[str, Any], value: date) -> dict[str, object]:
    month_name = t["months"][value.month - 1]
    return {"day": value.day, "month": value.month, "month_name": month_name, "year": value.year}


@jinja2.pass_context
def _format_value(ctx: jinja2.runtime.Context, value: str | int | float | bool | None) -> str:
    """A record's field value as held, with empty and yes/no values put into words."""
    t = ctx["t"]
    if value is None:
        return str(t["value_empty"])
    if isinstance(value, bool):
        return str(t["answer_yes"] if value else t["answer_no"])
    return str(value)


@jinja2.pass_context
def _term(ctx: jinja2.runtime.Context, key: str, table: str) -> str:
    """The translated label for ``key`` in ``t[table]``, or ``key`` itself when there is none."""
    labels: Mapping[str, str] = ctx["t"].get(table, {})
    return labels.get(key, key)


def _fill(phrase: str, **values: object) -> str:
    """Put values into a phrase's ``{name}`` placeholders; the result is escaped on output."""
    return phrase.format(**values)


_CSS_UNSAFE = re.compile(r'[\\"\n\r\f<>&]')


def _css_string(value: str) -> Markup:
    """``value`` as a quoted CSS string, safe inside a ``<style>`` element."""
    escaped = _CSS_UNSAFE.sub(lambda m: f"\\{ord(m.group()):x} ", value)
    return Markup(f'"{escaped}"')  # noqa: S704 - every unsafe character is escaped above

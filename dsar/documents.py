"""Documents a data subject reads: the access report and the deletion certificate.

Rendering is two steps so the HTML can be tested on its own: ``render_*`` fills a jinja2
template into HTML, :meth:`DocumentRenderer.to_pdf` turns that HTML into PDF bytes.

An access report can hold tens of thousands of records, so
:meth:`DocumentRenderer.render_access_report_pdf` lays it out in independent chunks: the copy
of the data in chunks of records (in worker processes when there are several), then the front
matter (letter, table of contents, Art. 15 information) with the page numbers of the copy
known. The chunks are merged into one PDF, the page numbers ("page X of Y") are stamped on
every page afterwards and the bookmarks are rebuilt, so the result reads as one document.

All wording lives in ``templates/``: one translation file per language in
``templates/i18n/<lang>.yaml``, handed to the templates as ``t``. The supported languages are
exactly the files found there, so adding a language is adding a file. Date formats and month
names are in the same files; this module holds no text a reader sees.
"""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import re
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import jinja2
import pypdf
import weasyprint
from markupsafe import Markup
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    Fit,
    IndirectObject,
    NameObject,
    PdfObject,
    StreamObject,
    TextStringObject,
)
from weasyprint.urls import URLFetcher

from dsar.register import RegisterEntry
from dsar.yaml_files import read_yaml
from integrations.base import Record

__all__ = [
    "ERASURE_OUTCOMES",
    "SYSTEM_STATUSES",
    "AccessReport",
    "Controller",
    "CopyPiece",
    "DeletionCertificate",
    "DocumentRenderer",
    "ErasureSection",
    "KeptData",
    "RecipientNotice",
    "SystemSection",
    "copy_pieces",
    "split_pieces",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

SYSTEM_STATUSES = ("found", "none", "failed", "manual")
CHUNK_RECORDS = 600  # records per independently laid-out chunk of the access report
MAX_WORKERS = 2
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
    register: RegisterEntry | None = None  # the processing register's facts (Art. 15(1)(a)-(h), 15(2))

    def __post_init__(self) -> None:
        _check_choice("status", self.status, SYSTEM_STATUSES)


Redaction = tuple[str, str, str]  # (system, record_id, field)


@dataclass(frozen=True)
class AccessReport:
    """Everything the access report shows.

    ``redactions`` are the fields an operator marked as other people's data (Art. 15(4)): the
    report shows a marker in their place and never their value.
    """

    request_id: str
    language: str
    controller: Controller
    subject_name: str | None
    received: date
    due: date
    answered: date
    systems: tuple[SystemSection, ...]
    redactions: frozenset[Redaction] = frozenset()

    def is_redacted(self, system: str, record_id: str, name: str) -> bool:
        """Whether ``name`` of record ``record_id`` in ``system`` must not be shown."""
        return (system, record_id, name) in self.redactions


@dataclass(frozen=True)
class CopyPiece:
    """Part of the copy of the data: a system's heading, then records of one of its categories.

    The copy is a run of pieces; a chunk of the report holds consecutive pieces, so one
    category's records can continue in the next chunk (``continued``).
    """

    section: SystemSection
    opens_system: bool
    category: str | None = None
    total: int = 0  # records in the whole category
    continued: bool = False
    records: tuple[Record, ...] = ()


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
    register: RegisterEntry | None = None  # where kept data lives and for how long (its retention rule)
    kept: tuple[KeptData, ...] = ()  # what is kept, by category, with its basis and until-date

    def __post_init__(self) -> None:
        _check_choice("outcome", self.outcome, ERASURE_OUTCOMES)


@dataclass(frozen=True)
class KeptData:
    """One category an erasure kept on purpose: its legal basis, and until when (None: legal hold)."""

    category: str
    count: int
    basis: str
    until: date | None


@dataclass(frozen=True)
class RecipientNotice:
    """A recipient told of the erasure under Art. 19 (an organisation's privacy contact)."""

    vendor: str
    contact: str
    systems: tuple[str, ...]
    notified: date


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
    recipients: tuple[RecipientNotice, ...] = ()


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
        self._stamps: dict[str, _PageStamp] = {}  # by language: each costs a layout
        self._env.filters.update(
            date=_format_date,
            datetime=_format_datetime,
            value=_format_value,
            term=_term,
            fill=_fill,
            css_string=_css_string,
            css_page_phrase=_css_page_phrase,
        )

    @property
    def languages(self) -> frozenset[str]:
        """The language codes a document can be rendered in."""
        return frozenset(self._translations)

    def render_access_report(self, report: AccessReport) -> str:
        """Render the whole Art. 15 access report as one HTML document."""
        return self._access_html(report, "all", copy_pieces(report))

    def render_access_report_pdf(
        self, report: AccessReport, *, chunk_records: int = CHUNK_RECORDS, workers: int | None = None
    ) -> bytes:
        """Lay out the access report in chunks (in ``workers`` processes) and merge them into one PDF.

        The chunks of the copy are handed to the workers as soon as their HTML is ready; the
        front matter is laid out once alongside them to learn its length, then again with the
        page numbers of the copy in its table of contents. A report whose copy fits one chunk
        is laid out once, whole: its contents' page numbers come from the layout itself.
        """
        chunks = split_pieces(copy_pieces(report), chunk_records)
        if len(chunks) <= 1:
            whole = _lay_out(self._job(self._access_html(report, "all", chunks[0] if chunks else [])))
            return _outlines_shown(whole.pdf)
        with _executor(_worker_count(workers, len(chunks))) as pool:
            sizing = pool.submit(_lay_out, self._front_job(report, _placeholder_pages(report)))
            futures = [pool.submit(_lay_out, job) for job in self._body_jobs(report, chunks)]
            body = [future.result() for future in futures]
            front = self._front(report, body, sizing.result().pages)
        phrase = str(self._translations[report.language]["access"]["page_number"])
        return _merge([front, *body], self._stamp(report.language, phrase), phrase, language=report.language)

    def _stamp(self, language: str, phrase: str) -> _PageStamp:
        if language not in self._stamps:
            self._stamps[language] = _PageStamp.from_sheet(self.to_pdf(self._stamp_sheet(language, phrase)))
        return self._stamps[language]

    def _body_jobs(self, report: AccessReport, chunks: Sequence[Sequence[CopyPiece]]) -> Iterator[_Job]:
        for n, chunk in enumerate(chunks):
            yield self._job(self._access_html(report, "body", chunk, first=n == 0, last=n == len(chunks) - 1))

    def _front(self, report: AccessReport, body: Sequence[_LaidOut], front_pages: int) -> _LaidOut:
        """The letter, contents and Art. 15 information, with the copy starting after it."""
        front = _lay_out(self._front_job(report, _body_pages(body, first_page=front_pages + 1)))
        for _ in range(3):  # the real page numbers may, rarely, change the front's length
            if front.pages == front_pages:
                break
            front_pages = front.pages
            front = _lay_out(self._front_job(report, _body_pages(body, first_page=front_pages + 1)))
        return front

    def _front_job(self, report: AccessReport, toc_pages: Mapping[str, int]) -> _Job:
        return self._job(self._access_html(report, "front", [], toc_pages=toc_pages))

    def _access_html(
        self,
        report: AccessReport,
        part: str,
        pieces: Sequence[CopyPiece],
        *,
        first: bool = True,
        last: bool = True,
        toc_pages: Mapping[str, int] | None = None,
    ) -> str:
        return self._render(
            "access_report.html.j2",
            report.language,
            report=report,
            part=part,
            pieces=pieces,
            first=first,
            last=last,
            toc_pages=toc_pages or {},
            stamped_pages=part != "all",
        )

    def _stamp_sheet(self, language: str, phrase: str) -> str:
        """HTML with every character the page numbers need, in the running footer's style."""
        sample = phrase.replace("{page}", "0123456789").replace("{pages}", "")
        context = {"t": self._translations[language], "lang": language}
        macros = self._env.get_template("_macros.html.j2").make_module(context)
        return str(getattr(macros, "stamp_sheet")(sample))  # noqa: B009 - a template macro, unknown to mypy

    def _job(self, html: str) -> _Job:
        return _Job(html=html, root=str(self._dir))

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
        pdf: bytes = _weasy(html, self._dir).write_pdf()
        return pdf

    def _render(self, template: str, language: str, **context: object) -> str:
        if language not in self._translations:
            supported = ", ".join(sorted(self._translations))
            raise ValueError(f"unsupported language {language!r}; supported: {supported}")
        t = self._translations[language]
        return self._env.get_template(template).render(lang=language, t=t, **context)


def copy_pieces(report: AccessReport) -> list[CopyPiece]:
    """The copy of the data as pieces: each system's heading, then its records by category."""
    pieces: list[CopyPiece] = []
    for section in report.systems:
        pieces.append(CopyPiece(section, opens_system=True))
        for category, records in _by_category(section.records).items():
            pieces.append(CopyPiece(section, False, category, len(records), records=tuple(records)))
    return pieces


def _by_category(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Records grouped by category, categories and records in the order the system gave them."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.category, []).append(record)
    return groups


def split_pieces(pieces: Sequence[CopyPiece], size: int) -> list[list[CopyPiece]]:
    """Consecutive pieces in chunks of at most ``size`` records (a category may continue)."""
    if size < 1:
        raise ValueError("a chunk holds at least one record")
    chunks: list[list[CopyPiece]] = [[]]
    room = size
    for piece in pieces:
        for part in _cut(piece, size):
            if part.records and len(part.records) > room:
                chunks.append(_trailing_headings(chunks[-1]))
                room = size
            chunks[-1].append(part)
            room -= len(part.records)
    return [chunk for chunk in chunks if chunk]


def _trailing_headings(chunk: list[CopyPiece]) -> list[CopyPiece]:
    """Take a system's heading off the end of ``chunk``, to go with its records into the next."""
    moved: list[CopyPiece] = []
    while len(chunk) > 1 and chunk[-1].opens_system and not chunk[-1].records:
        moved.insert(0, chunk.pop())
    return moved


def _cut(piece: CopyPiece, size: int) -> Iterator[CopyPiece]:
    """``piece`` in parts of at most ``size`` records; every part after the first continues it."""
    if not piece.records:
        yield piece
        return
    for start in range(0, len(piece.records), size):
        records = piece.records[start : start + size]
        yield CopyPiece(piece.section, False, piece.category, piece.total, start > 0, records)


@dataclass(frozen=True)
class _Job:
    """One HTML document to lay out, and the folder it may load files from."""

    html: str
    root: str


@dataclass(frozen=True)
class _LaidOut:
    """A laid-out chunk: its PDF, page count, headings and anchors (pages counted from 0)."""

    pdf: bytes
    pages: int
    bookmarks: tuple[tuple[int, str, int, float], ...]  # (level, label, page, top in CSS px)
    anchors: Mapping[str, int]


def _weasy(html: str, root: Path) -> weasyprint.HTML:
    return weasyprint.HTML(string=html, base_url=root.as_uri() + "/", url_fetcher=_LocalFetcher(root))


def _lay_out(job: _Job) -> _LaidOut:
    """Lay out one chunk (runs in a worker process when there are several)."""
    with _collection_paused():
        document = _weasy(job.html, Path(job.root)).render()
    bookmarks = tuple(
        (level, label, number, float(position[1]))
        for number, page in enumerate(document.pages)
        for level, label, position, _state in page.bookmarks
    )
    anchors = {name: number for number, page in enumerate(document.pages) for name in page.anchors}
    pdf: bytes = document.write_pdf()
    return _LaidOut(pdf, len(document.pages), bookmarks, anchors)


@contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a chunk is laid out (its box tree is large and alive)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _worker_count(wanted: int | None, jobs: int) -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(wanted or MAX_WORKERS, available, jobs))


def _executor(workers: int) -> Executor:
    """Worker processes for the chunks, or this process alone for one worker.

    Workers come from a fork server that has imported this module once: not forked from the
    caller, which may run threads (Prefect does), and not importing weasyprint per worker. As
    with any multiprocessing start method but fork, the program's main module must guard its
    entry point with ``if __name__ == "__main__":`` (console scripts and ``python -m`` do).
    """
    if workers <= 1:
        return _InlineExecutor()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


class _InlineExecutor(Executor):
    """Runs each job at once, in this process."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future


def _placeholder_pages(report: AccessReport) -> dict[str, int]:
    """Page numbers of the right width for the first layout of the front matter."""
    anchors = ["copy", *(f"copy-{section.system}" for section in report.systems)]
    return dict.fromkeys(anchors, 888)


def _body_pages(body: Sequence[_LaidOut], first_page: int) -> dict[str, int]:
    """The page number of every anchor in the copy, when the copy starts on ``first_page``."""
    pages: dict[str, int] = {}
    offset = first_page
    for chunk in body:
        for name, number in chunk.anchors.items():
            pages.setdefault(name, offset + number)
        offset += chunk.pages
    return pages


class _PageStamp:
    """Draws "page X of Y" in the running footer's font, after the chunks are merged.

    The font is taken from a one-line PDF laid out with the footer's style, so the digits and
    words are the same glyphs as the rest of the page furniture.
    """

    SIZE = 8.0  # pt, as the margin boxes in style.css
    GREY = 0x55 / 0xFF
    RIGHT_MM = 18.0  # the page's right margin
    BASELINE_MM = 8.4  # from the bottom edge, where the footer's margin box puts its line

    def __init__(self, font: DictionaryObject, glyphs: Mapping[str, tuple[int, float]]) -> None:
        self.font = font
        self._glyphs = glyphs

    @classmethod
    def from_sheet(cls, pdf: bytes) -> _PageStamp:
        """The stamp from a one-page PDF whose only text is set in the footer's font."""
        page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
        fonts = _dict(_dict(page["/Resources"])["/Font"])
        font = _dict(next(iter(fonts.values())))
        return cls(font, _glyph_table(font))

    def content(self, text: str, page_width: float) -> bytes:
        """A content stream drawing ``text`` right-aligned in the footer."""
        codes = "".join(f"{self._glyphs[char][0]:04x}" for char in text if char in self._glyphs)
        width = sum(self._glyphs[char][1] for char in text if char in self._glyphs) * self.SIZE / 1000
        x = page_width - self.RIGHT_MM * 72 / 25.4 - width
        y = self.BASELINE_MM * 72 / 25.4
        grey = f"{self.GREY:.3f} " * 3
        text = f"BT /DsarPageNo {self.SIZE:g} Tf {x:.2f} {y:.2f} Td <{codes}> Tj ET"
        return f"Q q {grey}rg {text} Q\n".encode("ascii")


_BFCHAR = re.compile(rb"<([0-9a-fA-F]{4})>\s*<([0-9a-fA-F]+)>")


def _glyph_table(font: DictionaryObject) -> dict[str, tuple[int, float]]:
    """Character -> (glyph id, advance in 1/1000 em) for a weasyprint Type0 font."""
    descendant = _dict(cast(ArrayObject, font["/DescendantFonts"].get_object())[0])
    widths = _cid_widths(cast(ArrayObject, descendant["/W"].get_object()))
    to_unicode = cast(StreamObject, font["/ToUnicode"].get_object())
    table: dict[str, tuple[int, float]] = {}
    for glyph_hex, text_hex in _BFCHAR.findall(to_unicode.get_data()):
        text = bytes.fromhex(text_hex.decode()).decode("utf-16-be")
        glyph = int(glyph_hex, 16)
        if len(text) == 1:
            table[text] = (glyph, widths.get(glyph, 0.0))
    return table


def _cid_widths(array: Sequence[Any]) -> dict[int, float]:
    """The /W array of a CID font: ``c [w1 w2 ...]`` or ``c_first c_last w``."""
    widths: dict[int, float] = {}
    index = 0
    while index < len(array):
        first = int(array[index])
        following = array[index + 1]
        if isinstance(following, list):
            widths.update({first + n: float(w) for n, w in enumerate(following)})
            index += 2
        else:
            widths.update(dict.fromkeys(range(first, int(following) + 1), float(array[index + 2])))
            index += 3
    return widths


def _merge(parts: Sequence[_LaidOut], stamp: _PageStamp, phrase: str, *, language: str) -> bytes:
    """One PDF of ``parts`` in order, "page X of Y" stamped on every page, bookmarks rebuilt.

    The document's title is the first part's (the HTML ``<title>``).
    """
    writer = pypdf.PdfWriter()
    readers = [pypdf.PdfReader(io.BytesIO(part.pdf)) for part in parts]
    for reader in readers:
        writer.append(reader, import_outline=False)
    _stamp_pages(writer, stamp, phrase)
    _outline(writer, parts)
    title = readers[0].metadata.title if readers and readers[0].metadata else None
    if title:
        writer.add_metadata({"/Title": title})
    writer._root_object[NameObject("/Lang")] = TextStringObject(language)
    writer.page_mode = "/UseOutlines"
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _outlines_shown(pdf: bytes) -> bytes:
    """The PDF opening with its bookmarks shown, as the merged reports do."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    writer.page_mode = "/UseOutlines"
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _stamp_pages(writer: pypdf.PdfWriter, stamp: _PageStamp, phrase: str) -> None:
    """Append the page number to every page's content, its own graphics state saved around it."""
    font = writer._add_object(stamp.font.clone(writer))
    opening = writer._add_object(_stream(b"q\n"))
    total = len(writer.pages)
    for number, page in enumerate(writer.pages, start=1):
        text = phrase.format(page=number, pages=total)
        closing = writer._add_object(_stream(stamp.content(text, float(page.mediabox.width))))
        page[NameObject("/Contents")] = ArrayObject([opening, *_contents(page), closing])
        _add_font(page, font)


def _stream(data: bytes) -> DecodedStreamObject:
    stream = DecodedStreamObject()
    stream.set_data(data)
    return stream


def _contents(page: pypdf.PageObject) -> list[IndirectObject]:
    contents = page.get("/Contents")
    if contents is None:
        return []
    if isinstance(contents.get_object(), ArrayObject):
        return list(contents.get_object())
    return [contents]


def _dict(value: object) -> DictionaryObject:
    """A PDF dictionary, through its indirect reference if need be."""
    resolved = value.get_object() if isinstance(value, PdfObject) else value
    if not isinstance(resolved, DictionaryObject):
        raise TypeError(f"expected a PDF dictionary, not {type(resolved).__name__}")
    return resolved


def _add_font(page: pypdf.PageObject, font: IndirectObject) -> None:
    """Name the stamp's font ``/DsarPageNo`` in the page's own copy of its font dictionary."""
    resources = _dict(page["/Resources"])
    fonts = resources.get("/Font")
    own = DictionaryObject(_dict(fonts)) if fonts is not None else DictionaryObject()
    own[NameObject("/DsarPageNo")] = font
    resources[NameObject("/Font")] = own


def _outline(writer: pypdf.PdfWriter, parts: Sequence[_LaidOut]) -> None:
    """PDF bookmarks from the headings of every part, nested by heading level."""
    parents: list[tuple[int, Any]] = []
    offset = 0
    for part in parts:
        for level, label, number, top in part.bookmarks:
            while parents and parents[-1][0] >= level:
                parents.pop()
            page = writer.pages[offset + number]
            fit = Fit.xyz(left=0, top=float(page.mediabox.height) - top * 0.75)
            parent = parents[-1][1] if parents else None
            item = writer.add_outline_item(title=label, page_number=offset + number, parent=parent, fit=fit)
            parents.append((level, item))
        offset += part.pages


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
        data = read_yaml(path)
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


_PAGE_PLACEHOLDER = re.compile(r"\{(page|pages)\}")


def _css_page_phrase(phrase: str) -> Markup:
    """A phrase such as "Page {page} of {pages}" as CSS ``content`` with the page counters."""
    parts = _PAGE_PLACEHOLDER.split(phrase)
    # the odd parts are the placeholders' names, "page" or "pages" (the pattern allows no other)
    css = [_css_string(part) if n % 2 == 0 else Markup(f"counter({part})") for n, part in enumerate(parts)]  # noqa: S704
    return Markup(" ").join(part for part in css if part != '""')


def _css_string(value: str) -> Markup:
    """``value`` as a quoted CSS string, safe inside a ``<style>`` element."""
    escaped = _CSS_UNSAFE.sub(lambda m: f"\\{ord(m.group()):x} ", value)
    return Markup(f'"{escaped}"')  # noqa: S704 - every unsafe character is escaped above

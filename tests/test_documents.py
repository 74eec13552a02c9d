"""The access report and deletion certificate, rendered in each language and read back from PDF."""

from __future__ import annotations

import io
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest
import yaml

from dsar.documents import (
    AccessReport,
    Controller,
    DeletionCertificate,
    DocumentRenderer,
    ErasureSection,
    SystemSection,
    copy_pieces,
    split_pieces,
)
from dsar.register import LocalText, RegisterEntry, Transfer
from integrations.base import Record

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
LANGUAGES = ("nb", "en")
CHAIN_HASH = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
SCRIPT = "<script>alert('x')</script>"

FAILED_WORDING = {
    "nb": ("Vi kunne IKKE søke i dette systemet", "ufullstendig"),
    "en": ("We could NOT search this system", "incomplete"),
}
NO_DATA_WORDING = {"nb": "fant ingen personopplysninger", "en": "found no personal data"}
COMPLETED_AT = {"nb": "30.11.2026 kl. 13.05 UTC", "en": "30 November 2026, 13:05 UTC"}
PAGE_ONE = {"nb": "Side 1 av", "en": "Page 1 of"}
DATES = {"nb": ("22.11.2026", "22.12.2026", "01.12.2026"), "en": ("22 November 2026", "22 December 2026")}
BODY_BOTTOM, BODY_TOP = 20 * 72 / 25.4, 842 - 22 * 72 / 25.4  # A4 without the page margins, in pt
ANSWERED = {"nb": "01.12.2026", "en": "1 December 2026"}


@pytest.fixture(scope="module")
def renderer() -> DocumentRenderer:
    return DocumentRenderer(TEMPLATES)


def controller() -> Controller:
    return Controller(
        name="Fjordsoft AS",
        org_number="912 345 678",
        address="Storgata 1\n0155 Oslo",
        email="personvern@fjordsoft.no",
        dpo_email="dpo@fjordsoft.no",
    )


def text(nb: str, en: str) -> LocalText:
    return LocalText(nb=nb, en=en)


CRM_REGISTER = RegisterEntry(
    description=text("Kunderegister for salg", "Customer register for sales"),
    role="sub-processor",
    vendor="HubSpot Ireland Limited",
    categories=("contact", "note"),
    purposes=(text("Oppfølging av kunder", "Following up customers"),),
    legal_basis=("GDPR Art. 6(1)(b)", "GDPR Art. 6(1)(f)"),
    retention=text("3 år etter siste kontakt", "3 years after the last contact"),
    source=text("Kolleger som registrerte deg", "Colleagues who registered you"),
    transfers=(
        Transfer(
            country="US", safeguard=text("EUs standardkontrakt 2021/914", "EU standard clauses 2021/914")
        ),
    ),
    automated_decisions=text("Poengsum for kundeverdi", "Customer value scoring"),
)
HELPDESK_REGISTER = RegisterEntry(
    description=text("Kundestøtte", "Customer support"),
    role="processor",
    vendor="Zendesk, Inc.",
    categories=("ticket",),
    purposes=(text("Besvare henvendelser", "Answering enquiries"),),
    legal_basis=("GDPR Art. 6(1)(a)",),
    retention=text("Til saken er løst pluss 1 år", "Until solved plus 1 year"),
    source=text("Deg selv", "Yourself"),
)
SMS_REGISTER = RegisterEntry(
    description=text("SMS-logg", "Text message log"),
    role="internal",
    categories=("sms_message",),
    purposes=(text("Engangskoder", "One-time codes"),),
    legal_basis=("GDPR Art. 6(1)(c)",),
    retention=text("90 dager", "90 days"),
    source=text("Mobiloperatøren din", "Your mobile operator"),
)
# What each language's report must say, drawn from the registers above (Art. 15(1)(a)-(h), 15(2)).
REGISTER_TEXTS = {
    language: (
        "HubSpot Ireland Limited",
        "Zendesk, Inc.",
        *(
            entry(language)
            for register in (CRM_REGISTER, HELPDESK_REGISTER, SMS_REGISTER)
            for entry in (register.description, register.retention, register.source, *register.purposes)
        ),
        CRM_REGISTER.transfers[0].safeguard(language),
        CRM_REGISTER.automated_decisions(language) if CRM_REGISTER.automated_decisions else "",
        "GDPR Art. 6(1)(f)",
    )
    for language in LANGUAGES
}
REDACTED_VALUE = "Ola Naboen"


def access_report(language: str, *, name: str | None = "Åse Ødegård") -> AccessReport:
    crm_records = (
        Record("contact", "c-1001", {"name": "Åse Ødegård", "city": "Tromsø", "vip": True, "phone": None}),
        Record("note", "n-7", {"text": SCRIPT, "score": 4.5}),
        Record("note", "n-8", {"text": "Ringte om faktura", "colleague": REDACTED_VALUE}),
    )
    return AccessReport(
        request_id="REQ-2026-0042",
        language=language,
        controller=controller(),
        subject_name=name,
        received=date(2026, 11, 22),
        due=date(2026, 12, 22),
        answered=date(2026, 12, 1),
        systems=(
            SystemSection(
                "crm", "hubspot", "found", {"contact": 1, "note": 2}, crm_records, register=CRM_REGISTER
            ),
            SystemSection(
                "helpdesk",
                "zendesk",
                "failed",
                {},
                (),
                error="timeout after 3 attempts",
                register=HELPDESK_REGISTER,
            ),
            SystemSection("sms", "sveve", "none", {}, (), register=SMS_REGISTER),
        ),
        redactions=frozenset({("crm", "n-8", "colleague")}),
    )


def certificate(language: str, *, helpdesk: str = "failed") -> DeletionCertificate:
    done = datetime(2026, 11, 30, 13, 5, tzinfo=UTC)
    return DeletionCertificate(
        request_id="REQ-2026-0043",
        language=language,
        controller=controller(),
        received=date(2026, 11, 22),
        due=date(2026, 12, 22),
        completed=date(2026, 11, 30),
        systems=(
            ErasureSection("crm", "hubspot", "erased", "hard_delete", {"contact": 1, "note": 3}, done, True),
            ErasureSection(
                "helpdesk", "zendesk", helpdesk, None, {}, None, False, error="HTTP 503 from vendor"
            ),
            ErasureSection(
                "accounting", "tripletex", "retained", "bokforingsloven_13", {"invoice": 2}, done, True
            ),
        ),
        chain_hash=CHAIN_HASH,
    )


def pdf_text(pdf: bytes) -> tuple[int, str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    """Text without white space: PDF text breaks lines anywhere, even after a slash."""
    return "".join(text.split())


@pytest.fixture(scope="module")
def chunked_pdfs(renderer: DocumentRenderer) -> dict[str, bytes]:
    """Both languages' reports through the chunked renderer, two records a chunk, in-process."""
    return {
        language: renderer.render_access_report_pdf(access_report(language), chunk_records=2, workers=1)
        for language in LANGUAGES
    }


@pytest.fixture(scope="module")
def whole_pdfs(renderer: DocumentRenderer) -> dict[str, bytes]:
    """Both languages' reports as the renderer lays out a copy that fits one chunk: once, whole."""
    return {language: renderer.render_access_report_pdf(access_report(language)) for language in LANGUAGES}


def system_article(html: str, status: str) -> str:
    match = re.search(rf'<article class="system status-{status}">(.*?)</article>', html, re.S)
    assert match, f"no section for a {status} system"
    return match.group(1)


def phrases(language: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((TEMPLATES / "i18n" / f"{language}.yaml").read_text("utf-8"))
    return loaded


def key_paths(node: object, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    return set().union(*(key_paths(child, f"{prefix}.{key}") for key, child in node.items())) or {prefix}


# --- access report -------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_access_report_escapes_field_values(renderer: DocumentRenderer, language: str) -> None:
    html = renderer.render_access_report(access_report(language))

    assert SCRIPT not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_access_report_shows_the_seeded_values(renderer: DocumentRenderer, language: str) -> None:
    html = renderer.render_access_report(access_report(language))

    for expected in (
        "REQ-2026-0042",
        "Fjordsoft AS",
        "912 345 678",
        "Åse Ødegård",
        "Tromsø",
        "c-1001",
        "4.5",
    ):
        assert expected in html
    for formatted in DATES[language]:
        assert formatted in html
    assert phrases(language)["answer_yes"] in html
    assert phrases(language)["value_empty"] in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_failed_system_is_not_reported_as_empty(renderer: DocumentRenderer, language: str) -> None:
    html = renderer.render_access_report(access_report(language))
    failed = system_article(html, "failed")
    could_not, incomplete = FAILED_WORDING[language]

    assert could_not in failed
    assert incomplete in failed
    assert "timeout after 3 attempts" in failed
    assert NO_DATA_WORDING[language] not in failed
    assert NO_DATA_WORDING[language] in system_article(html, "none")
    assert 'id="incomplete"' in html


def test_complete_report_has_no_incomplete_notice(renderer: DocumentRenderer) -> None:
    report = access_report("en")
    complete = replace(report, systems=report.systems[:1])

    html = renderer.render_access_report(complete)

    assert 'id="incomplete"' not in html
    assert "could NOT" not in html


def test_access_report_greets_without_a_name(renderer: DocumentRenderer) -> None:
    html = renderer.render_access_report(access_report("nb", name=None))

    assert "<p>Hei,</p>" in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_access_report_pdf_reads_back(renderer: DocumentRenderer, language: str) -> None:
    pages, text = pdf_text(renderer.to_pdf(renderer.render_access_report(access_report(language))))

    assert pages >= 1
    for expected in ("REQ-2026-0042", "Åse Ødegård", "Tromsø", "c-1001", SCRIPT, "www.datatilsynet.no"):
        assert expected in text
    assert FAILED_WORDING[language][0] in text.replace("\n", " ")
    assert PAGE_ONE[language] in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_report_gives_every_art15_item_from_the_register(
    chunked_pdfs: dict[str, bytes], language: str
) -> None:
    a = phrases(language)["access"]
    text = flat(pdf_text(chunked_pdfs[language])[1])

    for expected in REGISTER_TEXTS[language]:
        assert flat(expected) in text, expected
    for label in ("purposes", "legal_basis", "categories", "recipient", "retention", "source", "transfers"):
        assert flat(a[label]) in text, label
    assert flat(a["roles"]["sub-processor"]) in text
    assert flat(a["roles"]["processor"]) in text
    assert flat(a["countries"]["US"]) in text
    assert flat(a["legal_bases"]["GDPR Art. 6(1)(f)"]) in text
    assert flat(phrases(language)["categories"]["sms_message"]) in text
    for right in ("right_rectification", "right_erasure", "right_restriction", "right_objection"):
        assert flat(a[right]) in text, right
    assert flat(a["right_withdraw_consent"]) in text  # helpdesk relies on consent
    assert "Datatilsynet" in text
    assert "www.datatilsynet.no" in text
    assert flat(a["no_transfers"]) in text  # the systems without transfers say so
    assert flat(a["no_automated"]) in text  # and those without automated decisions
    assert flat(a["internal_only"]) in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_report_copies_every_value_and_redacts_marked_fields(
    chunked_pdfs: dict[str, bytes], language: str
) -> None:
    text = flat(pdf_text(chunked_pdfs[language])[1])
    a = phrases(language)["access"]

    for record in access_report(language).systems[0].records:
        assert record.record_id in text
        for name, value in record.fields.items():
            if value != REDACTED_VALUE:
                assert flat(f"{name}: {shown(value, language)}") in text
    assert flat(REDACTED_VALUE) not in text
    assert flat(f"colleague: {a['redacted']}") in text
    assert flat(a["redaction_note"]) in text


@pytest.mark.parametrize("layout", ["chunked_pdfs", "whole_pdfs"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_report_numbers_every_page_and_lists_the_contents(
    request: pytest.FixtureRequest, layout: str, language: str
) -> None:
    a = phrases(language)["access"]
    reader = pypdf.PdfReader(io.BytesIO(request.getfixturevalue(layout)[language]))
    pages = len(reader.pages)
    assert reader.trailer["/Root"]["/PageMode"] == "/UseOutlines"
    assert reader.trailer["/Root"]["/Lang"] == language

    for number, page in enumerate(reader.pages, start=1):
        text = page.extract_text()
        assert a["page_number"].format(page=number, pages=pages) in text
        assert "REQ-2026-0042" in text  # document id and date on every page
        assert ANSWERED[language] in text
    first = reader.pages[0].extract_text(extraction_mode="layout")
    assert a["toc_title"] in first
    bookmarks = {
        item.title: reader.get_destination_page_number(item) for item in outline_items(reader.outline)
    }
    headings = {a["copy_title"], a["processing_title"], a["rights_title"], "crm (CRM (HubSpot))"}
    assert headings <= set(bookmarks)
    copy_page = bookmarks[a["copy_title"]]
    assert copy_page is not None
    assert re.search(rf"{re.escape(a['copy_title'])} +{copy_page + 1}\n", first), "contents give its page"


@pytest.mark.parametrize("language", LANGUAGES)
def test_report_names_the_failed_system_as_failed(chunked_pdfs: dict[str, bytes], language: str) -> None:
    a = phrases(language)["access"]
    text = flat(pdf_text(chunked_pdfs[language])[1])

    assert flat(a["incomplete_title"]) in text
    assert flat(f"helpdesk \N{EN DASH} {a['status']['failed']}") in text  # in the contents
    assert flat(a["explain"]["failed"]) in text
    assert flat("timeout after 3 attempts") in text


@pytest.mark.parametrize("size", [1, 2, 3, 100])
def test_copy_is_split_in_order_and_within_the_chunk_size(size: int) -> None:
    report = access_report("en")
    chunks = split_pieces(copy_pieces(report), size)

    records = [r for chunk in chunks for piece in chunk for r in piece.records]
    assert records == [r for section in report.systems for r in section.records]
    assert all(sum(len(piece.records) for piece in chunk) <= size for chunk in chunks)
    for chunk in chunks[:-1]:
        assert not chunk[-1].opens_system, "a system's heading goes with its first records"
    notes = [piece.continued for chunk in chunks for piece in chunk if piece.category == "note"]
    assert notes == ([False, True] if size == 1 else [False])  # two notes: split only one a chunk


def test_chunked_report_reads_as_the_single_render(
    renderer: DocumentRenderer, chunked_pdfs: dict[str, bytes], whole_pdfs: dict[str, bytes]
) -> None:
    single = renderer.to_pdf(renderer.render_access_report(access_report("nb")))
    chunked, whole = chunked_pdfs["nb"], whole_pdfs["nb"]

    assert content_words(single) == content_words(chunked) == content_words(whole)
    assert pdf_text(chunked)[0] > pdf_text(single)[0], "two chunks of the copy, each from a new page"
    assert pdf_text(whole)[0] == pdf_text(single)[0], "a copy of one chunk: laid out whole"


def outline_items(outline: list[Any]) -> Iterator[Any]:
    """Every bookmark of a PDF outline, nested ones included."""
    for item in outline:
        if isinstance(item, list):
            yield from outline_items(item)
        else:
            yield item


def shown(value: str | int | float | bool | None, language: str) -> str:
    """A field value as the report writes it."""
    t = phrases(language)
    if value is None:
        return str(t["value_empty"])
    if isinstance(value, bool):
        return str(t["answer_yes"] if value else t["answer_no"])
    return str(value)


def content_words(pdf: bytes) -> list[str]:
    """The words of a report's pages, without what is in the margins (running header, footer)."""
    words: list[str] = []
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        parts: list[str] = []

        def inside(text: str, cm: list[float], tm: list[float], *_: object, parts: list[str] = parts) -> None:
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            if BODY_BOTTOM < y < BODY_TOP:
                parts.append(text)

        page.extract_text(visitor_text=inside)
        words += [word for word in "\n".join(parts).split() if not word.isdigit()]
    return words


# --- deletion certificate -------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_certificate_states_failures_plainly(renderer: DocumentRenderer, language: str) -> None:
    html = renderer.render_certificate(certificate(language))
    c = phrases(language)["certificate"]

    assert c["incomplete_title"] in html
    assert c["outcome"]["failed"] in html
    assert "HTTP 503 from vendor" in html
    assert c["complete_text"] not in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_certificate_without_failures_is_complete(renderer: DocumentRenderer, language: str) -> None:
    html = renderer.render_certificate(certificate(language, helpdesk="none"))
    c = phrases(language)["certificate"]

    assert c["complete_text"] in html
    assert c["incomplete_title"] not in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_certificate_shows_scope_and_proof(renderer: DocumentRenderer, language: str) -> None:
    t = phrases(language)
    html = renderer.render_certificate(certificate(language))

    terms = t["categories"]
    counts = f"{terms['contact']}: 1, {terms['note']}: 3"
    for expected in ("REQ-2026-0043", CHAIN_HASH, counts, f"{terms['invoice']}: 2", "bokforingsloven_13"):
        assert expected in html
    assert t["methods"]["hard_delete"] in html
    assert t["certificate"]["outcome"]["retained"] in html
    assert t["certificate"]["no_data_statement"] in html
    assert COMPLETED_AT[language] in html


@pytest.mark.parametrize("language", LANGUAGES)
def test_certificate_pdf_reads_back(renderer: DocumentRenderer, language: str) -> None:
    pages, text = pdf_text(renderer.to_pdf(renderer.render_certificate(certificate(language))))
    c = phrases(language)["certificate"]

    assert pages >= 1
    assert "REQ-2026-0043" in text
    assert CHAIN_HASH in text
    assert c["incomplete_title"] in text
    assert PAGE_ONE[language] in text


# --- languages and inputs -------------------------------------------------------------------------


def test_every_language_has_the_same_phrases() -> None:
    files = sorted((TEMPLATES / "i18n").glob("*.yaml"))
    reference = key_paths(phrases("en"))

    assert {f.stem for f in files} >= set(LANGUAGES)
    for path in files:
        assert key_paths(phrases(path.stem)) == reference, path.name


def test_renderer_lists_the_languages(renderer: DocumentRenderer) -> None:
    assert renderer.languages >= set(LANGUAGES)


def test_unsupported_language_is_refused(renderer: DocumentRenderer) -> None:
    with pytest.raises(ValueError, match="unsupported language 'de'"):
        renderer.render_access_report(access_report("de"))
    with pytest.raises(ValueError, match="unsupported language"):
        renderer.render_certificate(certificate("sv"))


def test_unknown_status_and_outcome_are_refused() -> None:
    with pytest.raises(ValueError, match="status"):
        SystemSection("crm", "hubspot", "partial", {}, ())
    with pytest.raises(ValueError, match="outcome"):
        ErasureSection("crm", "hubspot", "deleted", None, {}, None, False)


def test_translation_values_must_be_strings(tmp_path: Path) -> None:
    shutil.copytree(TEMPLATES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "i18n" / "en.yaml").write_text("answer_no: No\n", encoding="utf-8")

    with pytest.raises(ValueError, match="answer_no"):
        DocumentRenderer(tmp_path)


def test_controller_name_cannot_break_out_of_the_page_style(renderer: DocumentRenderer) -> None:
    report = access_report("en")
    hostile = Controller('Evil "AS" </style><script>x()</script>', "1", "Street", "a@example.no")
    html = renderer.render_access_report(replace(report, controller=hostile))

    assert "<script>x()" not in html
    assert html.count("</style>") == 1


# --- PDF resources --------------------------------------------------------------------------------


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    yield sock
    sock.close()


def test_pdf_makes_no_network_requests(renderer: DocumentRenderer, listening_socket: socket.socket) -> None:
    port = listening_socket.getsockname()[1]
    html = renderer.render_access_report(access_report("en")).replace(
        "</head>", f'<link rel="stylesheet" href="http://127.0.0.1:{port}/x.css"></head>'
    )

    renderer.to_pdf(html)

    with pytest.raises(BlockingIOError):
        listening_socket.accept()


def test_pdf_loads_files_only_from_the_templates_folder(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "inside.css").write_text('main::before { content: "INSIDE-MARK"; }', encoding="utf-8")
    (tmp_path / "outside.css").write_text('main::after { content: "OUTSIDE-MARK"; }', encoding="utf-8")
    local = DocumentRenderer(templates)
    links = '<link rel="stylesheet" href="inside.css"><link rel="stylesheet" href="../outside.css">'
    html = local.render_access_report(access_report("en")).replace("</head>", f"{links}</head>")

    _, text = pdf_text(local.to_pdf(html))

    assert "INSIDE-MARK" in text
    assert "OUTSIDE-MARK" not in text

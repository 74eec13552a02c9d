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
)
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


def access_report(language: str, *, name: str | None = "Åse Ødegård") -> AccessReport:
    crm_records = (
        Record("contact", "c-1001", {"name": "Åse Ødegård", "city": "Tromsø", "vip": True, "phone": None}),
        Record("note", "n-7", {"text": SCRIPT, "score": 4.5}),
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
            SystemSection("crm", "hubspot", "found", {"contact": 1, "note": 1}, crm_records),
            SystemSection("helpdesk", "zendesk", "failed", {}, (), error="timeout after 3 attempts"),
            SystemSection("sms", "sveve", "none", {}, ()),
        ),
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

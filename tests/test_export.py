"""The portability export (Art. 20): round trip, CSV, manifest, determinism, safe paths, PDF."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pypdf
import pytest
import weasyprint

from dsar.export import ExportCorrupt, attach_to_pdf, build_export, csv_text, read_export, safe_name
from integrations.base import Record

GENERATED = datetime(2026, 11, 30, 13, 5, 7, tzinfo=UTC)
TITLES = {
    "nb": "Dine personopplysninger i maskinlesbart format (personvernforordningen artikkel 20)",
    "en": "Your personal data in a machine-readable format (GDPR Article 20)",
}

CRM = (
    Record(
        "contact",
        "101",
        {
            "name": "Åse Ødegård",
            "city": "Tromsø, Æsøy",
            "phone": None,
            "company": "",
            "age": 42,
            "score": 0.1,
            "big": 12345678901234567890,
            "subscribed": True,
            "opted_out": False,
        },
    ),
    Record(
        "contact", "102", {"name": 'Kari "K" Nordmann', "note": "line 1\nline 2\r\nline 3", "extra": 1e-07}
    ),
    Record("note", "n-1", {"text": "=SUM(A1:A2), @x; ;-) \t tab"}),
)
TICKETS = (Record("ticket", "t/1", {"subject": "Hjelp", "priority": None, "closed": False}),)


def all_sections() -> list[tuple[str, list[Record]]]:
    return [("hubspot", list(CRM)), ("zendesk", list(TICKETS)), ("sms-log", [])]


def export(language: str = "nb", sections: Sequence[tuple[str, Sequence[Record]]] | None = None) -> bytes:
    chosen = all_sections() if sections is None else sections
    return build_export("R-2026-0001", chosen, generated_at=GENERATED, language=language)


def entries(zip_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_round_trip_gives_the_same_records() -> None:
    result = read_export(export())
    assert result == {
        "hubspot": {"contact": list(CRM[:2]), "note": [CRM[2]]},
        "zendesk": {"ticket": list(TICKETS)},
        "sms-log": {},
    }
    fields = result["hubspot"]["contact"][0].fields
    assert fields["phone"] is None
    assert fields["company"] == ""
    assert type(fields["age"]) is int
    assert type(fields["score"]) is float
    assert fields["subscribed"] is True


def test_layout_and_zip_metadata() -> None:
    zip_bytes = export()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        infos = archive.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert set(names) == {
        "README.txt",
        "manifest.json",
        "hubspot/contact.csv",
        "hubspot/contact.json",
        "hubspot/note.csv",
        "hubspot/note.json",
        "zendesk/ticket.csv",
        "zendesk/ticket.json",
    }
    assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
    assert {i.date_time for i in infos} == {(2026, 11, 30, 13, 5, 6)}  # zip keeps even seconds


def test_json_is_typed_utf8() -> None:
    items = json.loads(entries(export())["hubspot/contact.json"].decode("utf-8"))
    assert items[0]["record_id"] == "101"
    assert items[0]["fields"]["phone"] is None
    assert items[0]["fields"]["subscribed"] is True
    assert "Åse Ødegård".encode() in entries(export())["hubspot/contact.json"]  # not \u-escaped


def test_csv_reads_back_as_strings() -> None:
    raw = entries(export())["hubspot/contact.csv"]
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for æøå
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    header = ["record_id", "name", "city", "phone", "company", "age", "score", "big", "subscribed"]
    assert rows[0] == [*header, "opted_out", "note", "extra"]  # union, first-seen order
    for row, record in zip(rows[1:], CRM[:2], strict=True):
        expected = [record.record_id, *(csv_text(record.fields.get(name)) for name in rows[0][1:])]
        assert row == expected
    assert rows[1][3:5] == ["", ""]  # None and "" both read as an empty cell (the JSON keeps them apart)
    assert rows[1][8:10] == ["true", "false"]
    assert rows[2][1:3] == ['Kari "K" Nordmann', ""]
    assert rows[2][10:] == ["line 1\nline 2\r\nline 3", "1e-07"]
    assert float(rows[1][6]) == 0.1
    assert int(rows[1][7]) == 12345678901234567890


def test_manifest_lists_every_file_with_its_hash() -> None:
    files = entries(export())
    manifest = json.loads(files["manifest.json"])
    assert manifest["request_id"] == "R-2026-0001"
    assert manifest["generated_at"] == "2026-11-30T13:05:07+00:00"
    assert manifest["format_version"] == 1
    assert manifest["gdpr_article"] == "GDPR Art. 20"
    assert manifest["formats"]["json"]["lossless"] is True
    assert manifest["formats"]["csv"]["lossless"] is False
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) | {"README.txt", "manifest.json"} == set(files)
    for path, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
    assert listed["hubspot/contact.csv"] | {"sha256": ""} == {
        "path": "hubspot/contact.csv",
        "system": "hubspot",
        "category": "contact",
        "format": "csv",
        "records": 2,
        "sha256": "",
    }
    assert manifest["readme"]["sha256"] == hashlib.sha256(files["README.txt"]).hexdigest()


@pytest.mark.parametrize("target", ["hubspot/contact.json", "hubspot/note.csv", "README.txt"])
def test_a_tampered_file_is_detected(target: str) -> None:
    files = entries(export())
    files[target] = files[target].replace(b"1", b"2", 1) + b" "
    with pytest.raises(ExportCorrupt, match="sha256 does not match"):
        read_export(rezip(files))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.pop("zendesk/ticket.json"), "listed but missing"),
        (lambda f: f.update({"extra.txt": b"x"}), "not in the manifest"),
        (lambda f: f.pop("manifest.json"), "manifest.json: listed but missing"),
    ],
)
def test_missing_or_unlisted_files_are_detected(change: Any, problem: str) -> None:
    files = entries(export())
    change(files)
    with pytest.raises(ExportCorrupt, match=problem):
        read_export(rezip(files))


def test_not_a_zip_is_corrupt() -> None:
    with pytest.raises(ExportCorrupt, match="not a readable zip"):
        read_export(b"PK not really")


def test_same_input_gives_the_same_bytes() -> None:
    oslo = timezone(timedelta(hours=1))
    assert export() == export()
    assert export() == build_export(
        "R-2026-0001", all_sections(), generated_at=GENERATED.astimezone(oslo), language="nb"
    )
    assert export("en") != export("nb")


def test_system_order_does_not_change_the_zip_layout() -> None:
    forward, backward = export(), export(sections=list(reversed(all_sections())))
    assert list(entries(forward)) == list(entries(backward))
    assert read_export(forward) == read_export(backward)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc", "_._etc"),
        ("..", "_"),
        ("a/b\\c", "a_b_c"),
        (".hidden", "hidden"),
        ("Økonomi (2024)", "Økonomi__2024_"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("", "_"),
        ("x" * 100, "x" * 64),
    ],
)
def test_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_hostile_names_stay_inside_and_round_trip(tmp_path: Path) -> None:
    hostile = [
        ("../../etc", [Record("../../etc", "1", {"a": "x"}), Record("/abs", "2", {})]),
        ("a_b", [Record("Contact", "3", {}), Record("contact", "4", {})]),
        ("a/b", [Record("c", "5", {})]),
        ("manifest.json", [Record("x", "6", {})]),
    ]
    zip_bytes = build_export("R-1", hostile, generated_at=GENERATED, language="en")
    names = list(entries(zip_bytes))
    assert all(".." not in n.split("/") and not n.startswith("/") and n.count("/") <= 1 for n in names)
    assert len({n.casefold() for n in names}) == len(names)  # no clashes on case-insensitive disks
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        archive.extractall(tmp_path / "out")
    assert all(p.resolve().is_relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    assert not (tmp_path / "etc").exists()
    assert {"a_b/Contact.json", "a_b-2/c.json", "manifest.json-2/x.json"} <= set(names)  # safe names win
    assert read_export(zip_bytes) == {
        system: {r.category: [r] for r in records}
        if system != "../../etc"
        else {"../../etc": [records[0]], "/abs": [records[1]]}
        for system, records in hostile
    }


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        export(sections=[("s", [Record("c", "1", {"x": float("nan")})])])


def test_naive_time_and_unknown_language_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_export("R", [], generated_at=datetime(2026, 1, 1), language="nb")
    for language in ("de", "../i18n/nb"):
        with pytest.raises(ValueError, match="unsupported language"):
            build_export("R", [], generated_at=GENERATED, language=language)


@pytest.mark.parametrize("language", ["nb", "en"])
def test_readme_in_the_request_language(language: str) -> None:
    readme = entries(export(language))["README.txt"].decode("utf-8")
    assert readme.splitlines()[0] == TITLES[language]
    assert "R-2026-0001" in readme
    assert "2026-11-30 13:05 UTC" in readme
    assert "hubspot/contact.json" in readme
    assert "sms-log" in readme
    assert ("poster" if language == "nb" else "records") in readme
    assert "{{" not in readme
    assert "{%" not in readme


@pytest.fixture(scope="module")
def report_pdf() -> bytes:
    pdf: bytes = weasyprint.HTML(string="<h1>Innsyn</h1><p>Åse Ødegård</p>").write_pdf()
    return pdf


def first_filespec(reader: pypdf.PdfReader) -> Any:
    """The file specification of the first entry in the catalog's /EmbeddedFiles name tree."""
    names: Any = reader.trailer["/Root"]
    return names["/Names"]["/EmbeddedFiles"]["/Names"][1].get_object()


@pytest.mark.parametrize("language", ["nb", "en"])
def test_attached_to_a_pdf_and_extracted_identical(report_pdf: bytes, language: str) -> None:
    zip_bytes = export(language)
    pdf = attach_to_pdf(report_pdf, zip_bytes, "dataportabilitet-R-2026-0001.zip")
    assert pdf.startswith(report_pdf)  # an incremental update: the report itself is unchanged
    reader = pypdf.PdfReader(io.BytesIO(pdf), strict=True)
    assert len(reader.pages) == 1
    assert "Innsyn" in reader.pages[0].extract_text()
    assert reader.attachments == {"dataportabilitet-R-2026-0001.zip": [zip_bytes]}
    spec = first_filespec(reader)
    assert spec["/Desc"] == TITLES[language]
    stream = spec["/EF"]["/F"].get_object()
    assert stream["/Subtype"] == "/application/zip"
    assert stream["/Params"]["/Size"] == len(zip_bytes)
    assert read_export(reader.attachments["dataportabilitet-R-2026-0001.zip"][0]) == read_export(zip_bytes)


def test_attachment_name_is_sanitised_and_description_can_be_given(report_pdf: bytes) -> None:
    pdf = attach_to_pdf(report_pdf, b"not a zip", "../evil/Ø.zip", description="Vedlegg")
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    assert list(reader.attachments) == ["_evil_Ø.zip"]
    assert first_filespec(reader)["/Desc"] == "Vedlegg"


def test_links_and_earlier_attachments_survive() -> None:
    html = '<h1 id="top">Innsyn</h1><p style="break-before: page"><a href="#top">opp</a></p>'
    earlier = weasyprint.Attachment(string="vedlegg", name="brev.txt")
    pdf = attach_to_pdf(weasyprint.HTML(string=html).write_pdf(attachments=[earlier]), b"zip", "export.zip")
    reader = pypdf.PdfReader(io.BytesIO(pdf), strict=True)
    assert reader.attachments == {"brev.txt": [b"vedlegg"], "export.zip": [b"zip"]}
    assert list(reader.named_destinations) == ["top"]

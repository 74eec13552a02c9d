"""The portability export (GDPR Art. 20): the subject's records as JSON and CSV in one zip.

Layout of the zip (entries sorted by path, timestamps fixed to ``generated_at``, so the same
input always gives the same bytes, given the same zlib):

* ``<system>/<category>.json``: the lossless copy. An array of ``{"record_id", "fields"}``;
  values keep the type the system returned (string, integer, float, boolean, ``null``), so
  ``null`` and ``""`` stay apart.
* ``<system>/<category>.csv``: the human copy for spreadsheets. UTF-8 with a BOM (Excel then
  reads æøå correctly), ``record_id`` first, then the union of field names in first-seen order.
  Both ``null`` and a missing field become an empty cell, like ``""``; booleans are
  ``true``/``false``; floats use Python's shortest round-trip form. The manifest says so.
* ``manifest.json``: request id, time, format version, article, every file with its system,
  category, record count and SHA-256, and the README's hash. When the caller limited the export
  to what Art. 20(1) covers (``left_out``), also every category left out, with the reason.
* ``README.txt``: what the files are, in the request's language, from
  ``templates/export/README.<lang>.txt`` (all wording lives in templates), and which categories
  were left out and why.

File names come from :func:`safe_name`: system and category names are never trusted as paths.
The original names are kept in the manifest, which is what :func:`read_export` goes by.

Pure functions over :class:`~integrations.base.Record`: no Prefect, no ledger.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import jinja2
from pyhanko.pdf_utils import embed
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

from integrations.base import Record

__all__ = [
    "FORMAT_VERSION",
    "LEFT_OUT_BASIS",
    "LEFT_OUT_REASON",
    "ExportCorrupt",
    "attach_to_pdf",
    "build_export",
    "csv_text",
    "read_export",
    "safe_name",
]

FORMAT_VERSION = 1
GDPR_ARTICLE = "GDPR Art. 20"
MANIFEST = "manifest.json"
README = "README.txt"
ZIP_MIME = "application/zip"
# Why a category is not in a portability export: Art. 20(1) covers data the subject provided,
# processed on consent (6(1)(a)) or contract (6(1)(b)). The README says it in the subject's language.
LEFT_OUT_REASON = "not provided by the data subject / not processed on consent or contract"
LEFT_OUT_BASIS = "GDPR Art. 20(1)"
_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

Value = str | int | float | bool | None
Grouped = dict[str, dict[str, list[Record]]]

# How each format carries values; machine-readable so a receiving controller can rely on it.
_FORMATS: dict[str, dict[str, object]] = {
    "json": {"lossless": True, "encoding": "utf-8", "null": "null", "empty_string": '""'},
    "csv": {
        "lossless": False,
        "encoding": "utf-8-sig",
        "first_column": "record_id",
        "null": "empty cell",
        "missing_field": "empty cell",
        "empty_string": "empty cell",
        "boolean": "true/false",
        "note": "use the .json file where null and empty text must be told apart",
    },
}


class ExportCorrupt(ValueError):
    """An export does not match its manifest (tampered, truncated or not an export at all)."""


@dataclass(frozen=True)
class _File:
    """One data file of the export and the manifest's facts about it."""

    path: str
    system: str
    category: str
    format: str
    records: int
    data: bytes

    @property
    def stem(self) -> str:
        """The path without its extension: the JSON and CSV of one category share it."""
        return self.path.rsplit(".", 1)[0]

    def manifest_entry(self) -> dict[str, object]:
        return {
            "path": self.path,
            "system": self.system,
            "category": self.category,
            "format": self.format,
            "records": self.records,
            "sha256": _sha256(self.data),
        }


# --- building ----------------------------------------------------------------------------------


def build_export(
    request_id: str,
    sections: Sequence[tuple[str, Sequence[Record]]],
    *,
    generated_at: datetime,
    language: str,
    templates_dir: Path | None = None,
    left_out: Mapping[str, Iterable[str]] | None = None,
) -> bytes:
    """The zip for ``sections`` (system name, its records); deterministic for the same input.

    ``generated_at`` must be timezone-aware; it is written as UTC. ``templates_dir`` defaults
    to this checkout's ``templates/``. ``left_out`` (system -> categories) names what the caller
    kept out of the export because Art. 20(1) does not cover it; the README and the manifest
    then list those categories and say why. Without it, neither mentions leaving anything out.
    """
    moment = _utc(generated_at)
    grouped = _group(sections)
    files = _data_files(grouped)
    omitted = _left_out(left_out)
    readme = _render_readme(
        templates_dir or _TEMPLATES, language, request_id, moment, grouped, files, omitted or {}
    )
    manifest = _manifest(request_id, moment, sorted(grouped), files, readme, omitted)
    entries = {f.path: f.data for f in files} | {README: readme, MANIFEST: manifest}
    return _zip(entries, moment)


def _left_out(left_out: Mapping[str, Iterable[str]] | None) -> dict[str, list[str]] | None:
    """System -> its left-out categories, both sorted, systems with none dropped; None stays None."""
    if left_out is None:
        return None
    named = {system: sorted(set(categories)) for system, categories in left_out.items()}
    return {system: named[system] for system in sorted(named) if named[system]}


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("generated_at must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


def _group(sections: Sequence[tuple[str, Sequence[Record]]]) -> Grouped:
    """System -> category -> records, in the order given; a system named twice is merged."""
    grouped: Grouped = {}
    for system, records in sections:
        by_category = grouped.setdefault(system, {})
        for record in records:
            by_category.setdefault(record.category, []).append(record)
    return grouped


def _data_files(grouped: Grouped) -> list[_File]:
    # A system folder must not clash with the two top-level files once extracted.
    folders = _unique_names(grouped, taken={MANIFEST.casefold(), README.casefold()})
    files: list[_File] = []
    for system, by_category in grouped.items():
        stems = _unique_names(by_category)
        for category, records in by_category.items():
            stem = f"{folders[system]}/{stems[category]}"
            for fmt, data in (("json", _json_bytes(records)), ("csv", _csv_bytes(records))):
                files.append(_File(f"{stem}.{fmt}", system, category, fmt, len(records), data))
    return sorted(files, key=lambda f: f.path)


def _unique_names(names: Iterable[str], taken: set[str] | None = None) -> dict[str, str]:
    """A safe file name per name; clashes (also by case, for Windows and macOS) get ``-2``, ``-3``."""
    used = set(taken or ())
    out: dict[str, str] = {}
    # Names that are already safe claim their own name first; only the rewritten ones get suffixes.
    for name in sorted(names, key=lambda n: (safe_name(n) != n, n)):
        base = candidate = safe_name(name)
        n = 2
        while candidate.casefold() in used:
            candidate = f"{base}-{n}"
            n += 1
        used.add(candidate.casefold())
        out[name] = candidate
    return out


_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)
_MAX_NAME = 64


def safe_name(name: str) -> str:
    """``name`` as one path component that cannot leave its folder.

    Letters and digits (any script, NFC), ``-``, ``_`` and ``.`` are kept; everything else,
    slashes and backslashes included, becomes ``_``. Runs of dots collapse to one and leading or
    trailing dots go, so ``..`` and hidden files cannot occur; Windows device names get a ``_``
    prefix; an empty result is ``_``. At most 64 characters.
    """
    text = unicodedata.normalize("NFC", name)
    kept = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
    kept = re.sub(r"\.{2,}", ".", kept).strip(".")[:_MAX_NAME].rstrip(".")
    if kept.split(".")[0].casefold() in _WINDOWS_DEVICES:
        kept = f"_{kept}"
    return kept or "_"


def _json_bytes(records: Sequence[Record]) -> bytes:
    items = [{"record_id": r.record_id, "fields": dict(r.fields)} for r in records]
    try:
        text = json.dumps(items, ensure_ascii=False, indent=2, allow_nan=False)
    except ValueError as exc:  # NaN/Infinity are not JSON; say so without the value
        raise ValueError("a record holds a non-finite number, which JSON cannot carry") from exc
    return (text + "\n").encode("utf-8")


def _csv_bytes(records: Sequence[Record]) -> bytes:
    header = list(dict.fromkeys(name for r in records for name in r.fields))
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 and Excel both expect CRLF
    # Values are written verbatim, also ones starting with "=", "+", "-" or "@": prefixing them
    # against spreadsheet formula injection would change the subject's data in this copy.
    writer.writerow(["record_id", *header])
    for r in records:
        writer.writerow([r.record_id, *(csv_text(r.fields.get(name)) for name in header)])
    return out.getvalue().encode("utf-8-sig")


def csv_text(value: Value) -> str:
    """How a value is written in a CSV cell (None -> empty, booleans -> true/false)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest form that reads back as the same float
    return str(value)


def _render_readme(
    folder: Path,
    language: str,
    request_id: str,
    moment: datetime,
    grouped: Grouped,
    files: list[_File],
    left_out: Mapping[str, list[str]],
) -> bytes:
    if not re.fullmatch(r"[a-z]{2,3}", language):
        raise ValueError(f"unsupported language {language!r}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder / "export"),
        autoescape=jinja2.select_autoescape(disabled_extensions=("txt",), default=True),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    try:
        template = env.get_template(f"README.{language}.txt")
    except jinja2.TemplateNotFound as exc:
        raise ValueError(f"unsupported language {language!r}: no export README") from exc
    systems = [
        {"name": name, "files": [f for f in files if f.system == name and f.format == "json"]}
        for name in sorted(grouped)
    ]
    text = template.render(
        request_id=request_id,
        generated_at=moment.strftime("%Y-%m-%d %H:%M"),
        systems=systems,
        left_out=[{"name": name, "categories": categories} for name, categories in left_out.items()],
    )
    return text.replace("\n", "\r\n").encode("utf-8")  # CRLF so Notepad shows lines too


def _manifest(
    request_id: str,
    moment: datetime,
    systems: list[str],
    files: list[_File],
    readme: bytes,
    left_out: Mapping[str, list[str]] | None,
) -> bytes:
    manifest: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "gdpr_article": GDPR_ARTICLE,
        "request_id": request_id,
        "generated_at": moment.isoformat(),
        "systems": systems,
        "formats": _FORMATS,
        "files": [f.manifest_entry() for f in files],
        "readme": {"path": README, "sha256": _sha256(readme)},
    }
    if left_out is not None:
        manifest["left_out"] = [
            {"system": system, "category": category, "reason": LEFT_OUT_REASON, "basis": LEFT_OUT_BASIS}
            for system, categories in left_out.items()
            for category in categories
        ]
    return (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _zip(entries: Mapping[str, bytes], moment: datetime) -> bytes:
    """Deflated zip with fixed metadata per entry, so equal input gives equal bytes."""
    stamp = max(moment.timetuple()[:6], (1980, 1, 1, 0, 0, 0))  # the zip format starts in 1980
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(entries):
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever the host, so the bytes do not depend on it
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[path], compresslevel=9)
    return out.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- reading -----------------------------------------------------------------------------------


def read_export(zip_bytes: bytes) -> dict[str, dict[str, list[Record]]]:
    """System -> category -> records from an export's JSON files, after checking every hash.

    Raises :class:`ExportCorrupt` when the zip is unreadable, a file is missing, unlisted or
    differs from its manifest hash, or a JSON file is not what the format describes. Nothing is
    extracted to disk, so entry names cannot escape anywhere.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            manifest = _read_manifest(archive)
            _verify(archive, manifest)
            return _records(archive, manifest)
    except zipfile.BadZipFile as exc:
        raise ExportCorrupt(f"not a readable zip: {exc}") from exc


def _read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    manifest = _load_json(archive, MANIFEST)
    _expect(isinstance(manifest, dict), "manifest.json is not an object")
    manifest = cast(dict[str, Any], manifest)
    version = manifest.get("format_version")
    _expect(version == FORMAT_VERSION, f"unsupported format_version {version!r}")
    _expect(isinstance(manifest.get("files"), list), "manifest.json has no file list")
    _expect(isinstance(manifest.get("systems"), list), "manifest.json has no system list")
    return manifest


def _verify(archive: zipfile.ZipFile, manifest: Mapping[str, Any]) -> None:
    listed = [*manifest["files"], manifest.get("readme")]
    paths: set[str] = {MANIFEST}
    for entry in listed:
        _expect(isinstance(entry, dict) and isinstance(entry.get("path"), str), "bad file entry")
        path = entry["path"]
        _expect(_sha256(_read(archive, path)) == entry.get("sha256"), f"{path}: sha256 does not match")
        paths.add(path)
    unlisted = sorted(set(archive.namelist()) - paths)
    _expect(not unlisted, f"files not in the manifest: {', '.join(unlisted)}")


def _records(archive: zipfile.ZipFile, manifest: Mapping[str, Any]) -> dict[str, dict[str, list[Record]]]:
    result: dict[str, dict[str, list[Record]]] = {str(s): {} for s in manifest["systems"]}
    for entry in manifest["files"]:
        if entry.get("format") != "json":
            continue
        system, category = entry.get("system"), entry.get("category")
        _expect(isinstance(system, str) and isinstance(category, str), f"{entry['path']}: no system/category")
        records = [_record(category, item, entry["path"]) for item in _json_list(archive, entry["path"])]
        _expect(len(records) == entry.get("records"), f"{entry['path']}: record count differs from manifest")
        result.setdefault(system, {})[category] = records
    return result


def _json_list(archive: zipfile.ZipFile, path: str) -> list[Any]:
    items = _load_json(archive, path)
    _expect(isinstance(items, list), f"{path}: not a JSON array")
    return cast(list[Any], items)


def _record(category: str, item: Any, path: str) -> Record:
    _expect(isinstance(item, dict), f"{path}: a record is not an object")
    record_id, fields = item.get("record_id"), item.get("fields")
    _expect(isinstance(record_id, str) and isinstance(fields, dict), f"{path}: record without id or fields")
    scalars = (str, int, float, bool, type(None))
    _expect(all(isinstance(v, scalars) for v in fields.values()), f"{path}: a field value is not a scalar")
    return Record(category=category, record_id=record_id, fields=fields)


def _load_json(archive: zipfile.ZipFile, path: str) -> Any:
    try:
        return json.loads(_read(archive, path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportCorrupt(f"{path}: not valid UTF-8 JSON") from exc


def _read(archive: zipfile.ZipFile, path: str) -> bytes:
    try:
        return archive.read(path)
    except KeyError as exc:
        raise ExportCorrupt(f"{path}: listed but missing") from exc


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise ExportCorrupt(problem)


# --- PDF attachment ----------------------------------------------------------------------------


def attach_to_pdf(pdf: bytes, zip_bytes: bytes, filename: str, *, description: str | None = None) -> bytes:
    """``pdf`` with ``zip_bytes`` embedded as a file attachment (``/EmbeddedFiles``, application/zip).

    Written as an incremental update, so the original PDF bytes stay a prefix of the result.
    The description defaults to the first line of the export's README (the title, in the
    request's language); ``filename`` goes through :func:`safe_name`.
    """
    name = safe_name(filename)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    data = embed.EmbeddedFileObject.from_file_data(
        writer,
        zip_bytes,
        compress=False,  # already deflated
        params=embed.EmbeddedFileParams(embed_size=True, embed_checksum=True),
        mime_type=ZIP_MIME,
    )
    spec = embed.FileSpec(
        file_spec_string=name,  # the name-tree key; written as PDFDocEncoding or UTF-16 as needed
        file_name=name,
        embedded_data=data,
        description=description if description is not None else _readme_title(zip_bytes, name),
    )
    embed.embed_file(writer, spec)
    out = io.BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]  # pyhanko leaves this one unannotated
    return out.getvalue()


def _readme_title(zip_bytes: bytes, fallback: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            lines = archive.read(README).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError):
        return fallback
    return lines[0].strip() if lines and lines[0].strip() else fallback

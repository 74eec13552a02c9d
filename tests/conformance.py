"""Checking that every request a client sends matches the vendor's official OpenAPI description.

:class:`SpecCheckingTransport` wraps the transport a client uses against an emulator and
validates each outgoing request (path, method, parameters, body) with ``openapi-core``. A
request the vendor's spec would not accept fails the test instead of passing against a
too-lenient emulator. The spec's server is re-pointed at the emulator, keeping its base path.

Some stored files are defective as the vendor publishes them. :data:`REPAIRS` names, per file, the
function that repairs it when it is loaded (once per process), so a test only names the file::

    SpecCheckingTransport(inner, url, "tripletex_openapi.json")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = ["REPAIRS", "SPECS", "UNVALIDATED", "SpecCheckingTransport", "SpecViolation"]

Spec = dict[str, Any]

SPECS = Path(__file__).resolve().parent / "vendor-specs"  # copies of the vendors' own files (SOURCES.md)


class SpecViolation(AssertionError):
    """A client sent a request the vendor's OpenAPI description does not allow."""


# ---- repairs of the stored files ------------------------------------------------------------------


def repair_tripletex(node: Any) -> None:
    """Tripletex: type integer defaults and add parameter-free media types, in place.

    The file gives integer defaults as strings (``"default": "0"``), which the spec validator
    rejects, and names request bodies ``application/json; charset=utf-8``, while requests are
    matched on media types without parameters.
    """
    if isinstance(node, list):
        for item in node:
            repair_tripletex(item)
    if not isinstance(node, dict):
        return
    default, kind = node.get("default"), node.get("type")
    if isinstance(default, str) and kind in ("integer", "number"):
        node["default"] = (int if kind == "integer" else float)(default) if default else None
    if isinstance(node.get("content"), dict):
        for media in list(node["content"]):
            node["content"].setdefault(media.split(";")[0], node["content"][media])
    for value in list(node.values()):
        repair_tripletex(value)


_ZD_STUBS: dict[str, dict[str, object]] = {"schemas": {"type": "object"}, "examples": {"value": None}}


def repair_zendesk(spec: Spec) -> None:
    """Zendesk (``zd_*.yml``): restore what the stored copies lost, in place.

    SOURCES.md: "examples stripped". The files refer to ``#/components/parameters/*``,
    ``schemas/*Object`` and ``examples/*`` they do not contain, so no path resolves. Parameters are
    rebuilt the way Zendesk's OAS defines them (``UserId`` -> path ``user_id``, integer); any other
    missing component becomes a stub that accepts anything.
    """
    for template, item in spec["paths"].items():
        _inline_parameters(template, item)
    for kind, ref in sorted(set(re.findall(r'"#/components/(\w+)/(\w+)"', json.dumps(spec)))):
        spec["components"].setdefault(kind, {}).setdefault(ref, dict(_ZD_STUBS.get(kind, {})))


def _inline_parameters(template: str, item: dict[str, Any]) -> None:
    """Replace parameter refs by what they stand for in ``template``; declare any ``{name}`` left over."""
    wanted = set(re.findall(r"{(\w+)}", template))
    for op in (item, *(v for v in item.values() if isinstance(v, dict))):
        refs = op.get("parameters", [])
        op["parameters"] = [
            _parameter(p["$ref"].rsplit("/", 1)[1], wanted) if "$ref" in p else p for p in refs
        ]
    on_item = {p["name"] for p in item["parameters"] if p.get("in") == "path"}
    for op in (v for v in item.values() if isinstance(v, dict)):
        on_op = {p["name"] for p in op["parameters"] if p.get("in") == "path"}
        op["parameters"] += [_parameter(n, {n}) for n in sorted(wanted - on_item - on_op)]


def _parameter(ref: str, in_path: set[str]) -> dict[str, object]:
    """A Zendesk parameter from its component name: a path parameter if the template has it."""
    snake = ref if "_" in ref or ref.islower() else re.sub(r"(?<!^)(?=[A-Z])", "_", ref).lower()
    if snake in in_path:
        kind = "integer" if snake.endswith("_id") else "string"
        return {"name": snake, "in": "path", "required": True, "schema": {"type": kind}}
    return {"name": snake, "in": "query", "required": False, "schema": {"type": "string"}}


REPAIRS: dict[str, Callable[[Spec], None]] = {
    "tripletex_openapi.json": repair_tripletex,
    "zd_comments.yml": repair_zendesk,
    "zd_search.yml": repair_zendesk,
    "zd_tickets.yml": repair_zendesk,
    "zd_users.yml": repair_zendesk,
}
# Files whose repaired description is not validated as a whole before use: Tripletex's 1.9 MB
# take ~8 s (and pass); each request is still validated against it.
UNVALIDATED = frozenset({"tripletex_openapi.json"})


@cache
def _spec(name: str) -> Spec:
    """A stored spec as loaded, repaired if :data:`REPAIRS` names it; once per process."""
    text = (SPECS / name).read_text(encoding="utf-8")
    loaded: Spec = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    if repair := REPAIRS.get(name):
        repair(loaded)
    return loaded


@cache
def _openapi(name: str, base: str) -> OpenAPI:
    """The repaired spec with its server re-pointed at ``base`` (keeping the base path); cached."""
    spec = dict(_spec(name))
    server_path = urlsplit((spec.get("servers") or [{"url": ""}])[0]["url"]).path.rstrip("/")
    spec["servers"] = [{"url": base + server_path}]
    config = Config(spec_validator_cls=None) if name in UNVALIDATED else Config()
    return OpenAPI.from_dict(spec, config=config)


class _Request:
    """The request protocol openapi-core validates, over an ``httpx.Request``."""

    def __init__(self, request: httpx.Request, base: str) -> None:
        self.host_url = base
        self.path = request.url.path
        self.method = request.method.lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )
        self.content_type = request.headers.get("content-type", "").split(";")[0] or "application/json"
        self.body = request.content or None

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


class SpecCheckingTransport(httpx.BaseTransport):
    """Validates each request against ``spec_files`` (any one may match), then forwards it.

    ``uncovered`` lists path prefixes no stored spec describes (e.g. HubSpot deals); those
    requests are counted in ``unchecked`` rather than failed, so the gap stays visible.
    """

    def __init__(
        self, inner: httpx.BaseTransport, base_url: str, *spec_files: str, uncovered: tuple[str, ...] = ()
    ) -> None:
        self._inner = inner
        self._uncovered = uncovered
        self.unchecked = 0
        root = urlsplit(base_url)
        self._base = f"{root.scheme}://{root.netloc}"
        self._apis = [_openapi(name, self._base) for name in spec_files]
        self.checked = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        errors = []
        for api in self._apis:
            try:
                api.validate_request(_Request(request, self._base))
                break
            except Exception as exc:  # openapi-core raises a family of errors; any means "not this spec"
                errors.append(f"{type(exc).__name__}: {exc}")
        else:
            if request.url.path.startswith(self._uncovered) and all(
                e.startswith("PathNotFound") for e in errors
            ):
                self.unchecked += 1
                return self._inner.handle_request(request)
            raise SpecViolation(f"{request.method} {request.url.path}: " + " | ".join(errors))
        self.checked += 1
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()

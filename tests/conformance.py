"""Checking that every request a client sends matches the vendor's official OpenAPI description.

:class:`SpecCheckingTransport` wraps the transport a client uses against an emulator and
validates each outgoing request (path, method, parameters, body) with ``openapi-core``. A
request the vendor's spec would not accept fails the test instead of passing against a
too-lenient emulator. The spec's server is re-pointed at the emulator, keeping its base path.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = ["SPECS", "SpecCheckingTransport", "SpecViolation"]

SPECS = Path(__file__).resolve().parent / "vendor-specs"  # copies of the vendors' own files (SOURCES.md)


class SpecViolation(AssertionError):
    """A client sent a request the vendor's OpenAPI description does not allow."""


@cache
def _spec(name: str) -> dict[str, Any]:
    text = (SPECS / name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    return loaded


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
        self._apis = [self._api(name) for name in spec_files]
        self.checked = 0

    def _api(self, name: str) -> OpenAPI:
        spec = dict(_spec(name))
        server_path = urlsplit((spec.get("servers") or [{"url": ""}])[0]["url"]).path.rstrip("/")
        spec["servers"] = [{"url": self._base + server_path}]
        return OpenAPI.from_dict(spec)

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

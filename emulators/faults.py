"""What every emulator shares: fault switches, issued tokens, and the private admin paths.

A vendor emulator wraps each of its vendor endpoints with :func:`vendor_endpoint`, giving the
vendor's own answers for each fault (:class:`FaultAnswers`): a 429 with that vendor's body and
``Retry-After``, a 5xx, a garbage body, an expired-token 401. ``slow_next`` delays answers,
so clients meet their own timeouts; ``latency_ms`` (0 by default) delays every vendor answer,
as a real vendor's round trip does (benchmarks).

Admin paths (never part of a vendor's API): ``POST /__emulator/faults`` (JSON of switches),
``POST /__emulator/reset``, ``GET /__emulator/state``.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FaultAnswers", "Faults", "TokenStore", "admin_routes", "vendor_endpoint"]

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Faults:
    """Switches for misbehaviour; counters count down per vendor request (-1 = forever)."""

    rate_limit_next: int = 0
    retry_after_s: float = 1
    server_error_next: int = 0
    malformed_next: int = 0
    slow_next: int = 0
    slow_s: float = 2.0
    expire_token_next: int = 0
    latency_ms: float = 0  # steady delay before every vendor answer, faulty or not
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    COUNTERS = ("rate_limit_next", "server_error_next", "malformed_next", "slow_next", "expire_token_next")

    def take(self) -> str | None:
        """Count one vendor request and return the fault it meets, if any."""
        with self._lock:
            self.requests += 1
            for name in self.COUNTERS:
                left = getattr(self, name)
                if left:
                    setattr(self, name, left - 1 if left > 0 else left)
                    return name
        return None

    def update(self, changes: Mapping[str, Any]) -> None:
        """Set switches by name; unknown names raise KeyError, wrong types ValueError."""
        known = {f.name: f.type for f in fields(self) if not f.name.startswith("_")}
        with self._lock:
            for name, value in changes.items():
                if name not in known or name == "requests":
                    raise KeyError(name)
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise ValueError(f"{name} must be a number")
                setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:  # not asdict(): it would deep-copy the lock
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class FaultAnswers(Protocol):
    """A vendor's own answers for each fault."""

    def rate_limited(self, retry_after_s: float) -> Response: ...
    def server_error(self) -> Response: ...
    def token_expired(self) -> Response: ...


def malformed() -> Response:
    """A 200 whose body is not what the content type promises (a proxy's truncated page)."""
    return Response(b"<html><body>502 Bad Gatewa", status_code=200, media_type="application/json")


def vendor_endpoint(faults: Faults, answers: FaultAnswers, handler: Endpoint) -> Endpoint:
    """Wrap a vendor endpoint so it meets the configured faults before doing its job."""

    async def endpoint(request: Request) -> Response:
        fault = faults.take()
        if faults.latency_ms > 0:  # awaited, not slept: other requests proceed meanwhile
            await asyncio.sleep(faults.latency_ms / 1000)
        if fault == "rate_limit_next":
            return answers.rate_limited(faults.retry_after_s)
        if fault == "server_error_next":
            return answers.server_error()
        if fault == "malformed_next":
            return malformed()
        if fault == "expire_token_next":
            return answers.token_expired()
        if fault == "slow_next":
            await asyncio.sleep(faults.slow_s)
        return await handler(request)

    return endpoint


class TokenStore:
    """Access tokens an emulator issued, each valid for ``lifetime_s`` seconds."""

    def __init__(self, lifetime_s: float = 3600) -> None:
        self.lifetime_s = lifetime_s
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()
        self.issued = 0

    def issue(self) -> tuple[str, float]:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expiry[token] = time.monotonic() + self.lifetime_s
            self.issued += 1
        return token, self.lifetime_s

    def valid(self, token: str) -> bool:
        with self._lock:
            return self._expiry.get(token, 0.0) > time.monotonic()

    def expire_all(self) -> None:
        with self._lock:
            self._expiry.clear()


def admin_routes(
    faults: Faults, *, snapshot: Callable[[], dict[str, Any]], reset: Callable[[], None]
) -> list[Route]:
    """The private admin paths every emulator serves."""

    async def set_faults(request: Request) -> Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            faults.update(body)
        except (ValueError, KeyError) as exc:
            return JSONResponse({"error": f"bad fault switches: {exc}"}, status_code=400)
        return JSONResponse(faults.snapshot())

    async def do_reset(_: Request) -> Response:
        reset()
        return Response(status_code=204)

    async def state(_: Request) -> Response:
        return JSONResponse(snapshot() | {"faults": faults.snapshot()})

    return [
        Route("/__emulator/faults", set_faults, methods=["POST"]),
        Route("/__emulator/reset", do_reset, methods=["POST"]),
        Route("/__emulator/state", state, methods=["GET"]),
    ]

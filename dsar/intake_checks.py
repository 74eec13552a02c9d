"""What a payload must pass before anything is written: configuration, credentials, size, type, schema.

Each check raises :class:`Refused` with the HTTP status and a one-line reason that names the
problem, never the data: 401 for a missing, invalid or stale signature or token (compared in
constant time), 413 for a body over the limit (counted while it is read, whatever
``Content-Length`` says), 415 for anything but ``application/json``, 400 for unreadable JSON, 422
for JSON that does not fit the model (the first field at fault is named, not its value), and
503 when the secret to check against is not configured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import Request

__all__ = [
    "SIGNATURE",
    "TIMESTAMP",
    "Refused",
    "check_bearer",
    "check_json",
    "check_signature",
    "configured",
    "parse",
    "read_body",
    "signature_headers",
]

Model = TypeVar("Model", bound=BaseModel)
SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"


class Refused(Exception):
    """A payload answered with a 4xx (or 503) and a one-line reason; nothing was written."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def configured(secret: SecretStr | None, what: str) -> bytes:
    """The secret to check against, or 503: refusing everyone is safer than trusting anyone."""
    if secret is None or not secret.get_secret_value():
        raise Refused(503, f"{what} is not configured on this server")
    return secret.get_secret_value().encode()


def signature_headers(request: Request, tolerance_s: int) -> tuple[str, str]:
    """The signature and its timestamp, which must be within ``tolerance_s`` of now."""
    stamp, signature = request.headers.get(TIMESTAMP), request.headers.get(SIGNATURE)
    if not stamp or not signature:
        raise Refused(401, "the webhook signature or its timestamp is missing")
    if abs(_age_s(stamp)) > tolerance_s:
        raise Refused(401, "the signature timestamp is stale or in the future")
    return stamp, signature


def _age_s(stamp: str) -> float:
    """Seconds since an ISO 8601 timestamp with a zone (Zendesk: ``2025-01-31T09:00:00Z``)."""
    try:
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return (datetime.now(UTC) - moment).total_seconds()
    except (ValueError, OverflowError):
        raise Refused(401, "the signature timestamp is not an ISO 8601 time with a zone") from None


def check_signature(secret: bytes, stamp: str, body: bytes, signature: str) -> None:
    """``signature`` must be base64(HMAC-SHA256(secret, timestamp + raw body)), compared in constant time."""
    digest = hmac.new(secret, stamp.encode("latin-1") + body, hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(digest), signature.encode("latin-1")):
        raise Refused(401, "the webhook signature does not match")


def check_bearer(request: Request, token: bytes) -> None:
    """``Authorization: Bearer <token>``, compared in constant time."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1"), token):
        raise Refused(401, "a valid bearer token is required")


def check_json(request: Request) -> None:
    """The body must be declared ``application/json`` (a charset parameter is fine)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise Refused(415, "send the payload as application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise Refused(400, "the Content-Length header is not a number")
    if declared is not None and int(declared) > limit:
        raise Refused(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[Model], request: Request, body: bytes) -> Model:
    """The payload as ``model``: 415 if not JSON, 400 if malformed, 422 if it does not fit."""
    check_json(request)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _refusal(exc) from None


def _refusal(exc: ValidationError) -> Refused:
    """400 for unreadable JSON, else 422 naming the first field (never its value)."""
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    if first["type"] == "json_invalid":
        return Refused(400, "the body is not valid JSON")
    loc = first["loc"]
    if first["type"] == "extra_forbidden":  # the unknown key is the sender's text: never repeat it
        return Refused(
            422, f"{_path(loc[:-1])}: unknown field (allowed fields are in the OpenAPI description)"
        )
    return Refused(422, f"{_path(loc)}: {first['msg']}")


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"

"""What the intake endpoint accepts and answers: pydantic models and the OpenAPI description built from them.

The models are strict (no coercion: ``"ticket_id": 123`` is refused, send ``"123"``) and refuse
unknown fields. Empty strings stand for "not given", since Zendesk renders an empty placeholder as
``""``. Whether an e-mail or phone number is valid is decided by :func:`dsar.intake.build_subject`,
as for the command line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "Answer",
    "Controller",
    "Corrections",
    "ErrorBody",
    "GenericRequest",
    "Requester",
    "ZendeskWebhook",
    "openapi_document",
]

Strict = ConfigDict(strict=True, extra="forbid", frozen=True)
RequestKind = Literal["access", "erasure", "rectification", "restriction", "objection", "portability"]
Language = Literal["nb", "en"]
_EMAIL_OR_EMPTY: list[JsonValue] = [
    {"type": "string", "format": "email", "maxLength": 254},
    {"const": ""},
    {"type": "null"},
]


class Requester(BaseModel):
    """Who the request is about: an e-mail address or a phone number at least ("" = not given)."""

    model_config = Strict

    email: str | None = Field(default=None, max_length=254, json_schema_extra={"anyOf": _EMAIL_OR_EMPTY})
    phone: str | None = Field(default=None, max_length=32)
    name: str | None = Field(default=None, max_length=200)


class Corrections(BaseModel):
    """Rectification (Art. 16): the corrected values ("" = not corrected); at least one is required."""

    model_config = Strict

    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254, json_schema_extra={"anyOf": _EMAIL_OR_EMPTY})
    phone: str | None = Field(default=None, max_length=32)


class Controller(BaseModel):
    """The customer we only process the data for: the request is forwarded to them, not acted on."""

    model_config = Strict

    name: str = Field(min_length=2, max_length=200)
    email: str = Field(max_length=254, json_schema_extra={"format": "email"})


class ZendeskWebhook(BaseModel):
    """The body our Zendesk webhook template sends (see :mod:`dsar.intake_api`)."""

    model_config = Strict

    ticket_id: str = Field(pattern=r"^[1-9][0-9]{0,19}$", description="the Zendesk ticket id, as text")
    request_type: RequestKind
    requester: Requester
    language: Language = "nb"
    corrections: Corrections | None = None
    withdraws_consent: bool = False  # an objection that withdraws consent (Art. 7(3))
    controller: Controller | None = None


class GenericRequest(BaseModel):
    """A request from another ticketing system (Jira Service Management, e-mail-to-ticket, ...)."""

    model_config = Strict

    source: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="the sending system, e.g. jira")
    external_ref: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,94}$", description="the ticket's key there, e.g. DSR-42"
    )
    request_type: RequestKind
    requester: Requester
    language: Language = "nb"
    corrections: Corrections | None = None
    withdraws_consent: bool = False  # an objection that withdraws consent (Art. 7(3))
    controller: Controller | None = None


class Answer(BaseModel):
    """The request the payload registered (201, 202) or repeated (200, ``duplicate``)."""

    request_id: str
    due_date: str = Field(json_schema_extra={"format": "date"})
    duplicate: bool


class ErrorBody(BaseModel):
    """Why the payload was refused: one line, never personal data."""

    error: str


_ERRORS = {
    "400": "malformed JSON or an unreadable body",
    "401": "missing, invalid or stale signature, or a wrong bearer token",
    "413": "the body is larger than the configured limit",
    "415": "the body is not application/json",
    "422": "the JSON does not match the schema, or an identifier is not valid",
    "503": "the intake secret is not configured, or the ledger is unavailable",
}
_ANSWERS = {
    "200": "an identical request is already open: its id (duplicate: true); nothing new was started",
    "201": "registered, and its flow started",
    "202": "registered; starting its flow failed and is left to the reconciler",
}


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for ``POST /intake/zendesk`` and ``POST /intake/requests``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "dsar-pipeline intake", "version": "1"},
        "paths": {
            "/intake/zendesk": {"post": _operation("zendesk", ZendeskWebhook, "zendeskSignature")},
            "/intake/requests": {"post": _operation("generic", GenericRequest, "bearer")},
        },
        "components": {"schemas": _schemas(), "securitySchemes": _security()},
    }


def _operation(name: str, model: type[BaseModel], scheme: str) -> dict[str, Any]:
    body = {"$ref": f"#/components/schemas/{model.__name__}"}
    answers = {code: _response(text, "Answer") for code, text in _ANSWERS.items()}
    errors = {code: _response(text, "ErrorBody") for code, text in _ERRORS.items()}
    return {
        "operationId": f"intake_{name}",
        "summary": (model.__doc__ or "").strip(),
        "security": [{scheme: [], "zendeskTimestamp": []} if scheme == "zendeskSignature" else {scheme: []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": answers | errors,
    }


def _response(description: str, schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (ZendeskWebhook, GenericRequest, Answer, ErrorBody):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas |= schema.pop("$defs", {})
        schemas[model.__name__] = schema
    return schemas


def _security() -> dict[str, Any]:
    signature = "base64(HMAC-SHA256(signing secret, timestamp header + raw body))"
    return {
        "zendeskSignature": _header("X-Zendesk-Webhook-Signature", signature),
        "zendeskTimestamp": _header(
            "X-Zendesk-Webhook-Signature-Timestamp", "ISO 8601, e.g. 2025-01-31T09:00:00Z"
        ),
        "bearer": {"type": "http", "scheme": "bearer", "description": "DSAR_INTAKE_BEARER_TOKEN"},
    }


def _header(name: str, description: str) -> dict[str, Any]:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}

"""The intake HTTP endpoint: tickets become registered requests (run by ``dsar serve``).

Routes::

    POST /intake/zendesk       a signed Zendesk webhook (body: ZendeskWebhook)
    POST /intake/requests      any other ticketing system, ``Authorization: Bearer <token>``
    GET  /intake/openapi.json  the OpenAPI 3.1 description of both (dsar.intake_schema)
    GET  /intake/health        ``{"status": "ok"}``
    GET  /identity/...         the data subject's identity pages (dsar.identity.web)

Answers: 201 registered and started; 202 registered but the flow could not be started (the
failure is a ledger event, the reconciler starts it later); 200 ``duplicate: true`` with the id of
an identical open request (nothing started twice). Refusals change nothing and say why in one
line without personal data, ``{"error": "..."}``: 400 malformed JSON, 401 missing/invalid/stale
signature or wrong token, 413 body over ``intake_max_body_bytes`` (counted while reading), 415
not JSON, 422 schema or identifier invalid, 503 secret not configured or ledger unavailable.

Zendesk signs every webhook: ``X-Zendesk-Webhook-Signature`` is
``base64(HMAC-SHA256(secret, X-Zendesk-Webhook-Signature-Timestamp + raw body))``; timestamps more
than ``intake_signature_tolerance_s`` away from now are refused, replays included. The webhook
(Admin Center > Apps and integrations > Webhooks: POST, JSON, endpoint ``https://<host>/intake/zendesk``,
its signing secret in ``DSAR_INTAKE_ZENDESK_SECRET``) is notified by a trigger on ticket creation
with two drop-down fields whose option tags are ``access``/``erasure`` and ``nb``/``en``::

    {
      "ticket_id": "{{ticket.id}}",
      "request_type": "{{ticket.ticket_field_<REQUEST_TYPE_FIELD_ID>}}",
      "language": "{{ticket.ticket_field_<LANGUAGE_FIELD_ID>}}",
      "requester": {
        "email": "{{ticket.requester.email}}",
        "phone": "{{ticket.requester.phone}}",
        "name": "{{ticket.requester.name}}"
      }
    }

Empty placeholders arrive as ``""`` and count as not given. After registering, an internal note
with the request id and due date (``templates/mail/ticket_comment*``, no personal data) is queued in
the ledger's comment outbox (:mod:`dsar.comments`, once per request and ticket, so a repeated
webhook queues nothing twice) before the answer, and delivered to the Zendesk ticket after it; a
failure there is a ledger event, never an error answer, and the note stays queued until the next
delivery (the next webhook for the request, or the daily deadline watch) takes it.
Logs carry request ids and error class names only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dsar import comments, intake
from dsar.comments import ZENDESK, Commenter
from dsar.documents import DocumentRenderer
from dsar.identity.web import identity_routes
from dsar.intake_checks import (
    Refused,
    check_bearer,
    check_json,
    check_signature,
    configured,
    parse,
    read_body,
    signature_headers,
)
from dsar.intake_schema import Answer, GenericRequest, Requester, ZendeskWebhook, openapi_document
from dsar.ledger import Ledger
from dsar.ledger.chain import append_event
from dsar.settings import Settings

__all__ = ["Commenter", "Starter", "create_intake_app"]

log = logging.getLogger(__name__)

Starter = Callable[[str, str], None]  # (request id, request type): start the request's flow
INTAKE_NOTE = "intake.note"  # the outbox kind of the intake's note
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Order:
    """A validated payload, whichever route it came by."""

    request_type: str
    requester: Requester
    language: str
    ticket_ref: str
    zendesk_ticket: str | None = None  # where to comment back
    ask: ZendeskWebhook | GenericRequest | None = None  # for the request's details


def _details(ask: ZendeskWebhook | GenericRequest | None, region: str) -> dict[str, Any]:
    """Corrections, consent withdrawal and controller of a payload, checked as for the command line."""
    if ask is None:
        return {}
    details = intake.build_details(
        corrections=ask.corrections.model_dump() if ask.corrections else None,
        controller=ask.controller.name if ask.controller else None,
        controller_email=ask.controller.email if ask.controller else None,
        region=region,
    )
    if ask.withdraws_consent:
        details["withdraws_consent"] = True
    return details


def create_intake_app(
    ledger: Ledger,
    settings: Settings,
    *,
    start: Starter,
    comment: Commenter | None,
    restart: Starter | None = None,
) -> Starlette:
    """The intake as a Starlette app; ``start`` and ``comment`` are injected (tests need no Prefect).

    It also serves the subject's identity pages (:mod:`dsar.identity.web`); ``restart`` continues
    a request whose flow stopped waiting for the subject (default: ``start``).
    """
    desk = _Intake(ledger, settings, start, comment)
    routes = [
        Route("/intake/zendesk", _guarded(desk.zendesk), methods=["POST"]),
        Route("/intake/requests", _guarded(desk.generic), methods=["POST"]),
        Route("/intake/openapi.json", _openapi, methods=["GET"]),
        Route("/intake/health", _health, methods=["GET"]),
        *identity_routes(ledger, settings, restart=restart or start),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class _Intake:
    """The two POST routes and what they share: checks, registration, start, comment."""

    def __init__(self, ledger: Ledger, settings: Settings, start: Starter, comment: Commenter | None) -> None:
        self._ledger, self._settings = ledger, settings
        self._start, self._comment = start, comment
        self._lock = threading.Lock()  # one registration at a time: repeats see the first
        self._renderer: DocumentRenderer | None = None

    async def zendesk(self, request: Request) -> Response:
        """``POST /intake/zendesk``: signature, then payload, then registration."""
        secret = configured(self._settings.intake_zendesk_secret, "the Zendesk webhook secret")
        stamp, signature = signature_headers(request, self._settings.intake_signature_tolerance_s)
        body = await read_body(request, self._settings.intake_max_body_bytes)
        check_signature(secret, stamp, body, signature)
        hook = parse(ZendeskWebhook, request, body)
        order = Order(
            hook.request_type,
            hook.requester,
            hook.language,
            f"{ZENDESK}{hook.ticket_id}",
            hook.ticket_id,
            hook,
        )
        return await run_in_threadpool(self._admit, order)

    async def generic(self, request: Request) -> Response:
        """``POST /intake/requests``: bearer token, then payload, then registration."""
        token = configured(self._settings.intake_bearer_token, "the intake bearer token")
        check_bearer(request, token)
        check_json(request)
        body = await read_body(request, self._settings.intake_max_body_bytes)
        ask = parse(GenericRequest, request, body)
        order = Order(
            ask.request_type, ask.requester, ask.language, f"{ask.source}:{ask.external_ref}", ask=ask
        )
        return await run_in_threadpool(self._admit, order)

    def _admit(self, order: Order) -> Response:
        """Register (or find the open twin), start the flow, and answer; comment after answering."""
        who = order.requester
        try:
            subject = intake.build_subject(
                email=who.email, phone=who.phone, name=who.name, region=self._settings.default_phone_region
            )
            details = _details(order.ask, self._settings.default_phone_region)
            with self._lock:
                done = intake.register_or_existing(
                    self._ledger,
                    request_type=order.request_type,
                    subject=subject,
                    ticket_ref=order.ticket_ref,
                    language=order.language,
                    details=details,
                )
        except intake.IntakeError as exc:
            raise Refused(422, str(exc)) from None
        status = 200 if done.duplicate else (201 if self._started(done) else 202)
        log.info(
            "intake: %s %s (HTTP %d)", done.request_id, "repeated" if done.duplicate else "registered", status
        )
        answer = Answer(request_id=done.request_id, due_date=done.due_date, duplicate=done.duplicate)
        task = self._comment_task(order, done)
        return JSONResponse(answer.model_dump(), status_code=status, background=task)

    def _started(self, done: intake.Registered) -> bool:
        """Start the flow; a failure is recorded on the request (the reconciler retries), not raised."""
        try:
            self._start(done.request_id, done.request_type.value)
        except Exception as exc:  # any failure: the request is registered and must not be lost
            log.warning("intake: starting %s failed (%s)", done.request_id, type(exc).__name__)
            self._record(done.request_id, "flow.start_failed", {"error": type(exc).__name__, "via": "intake"})
            return False
        return True

    def _comment_task(self, order: Order, done: intake.Registered) -> BackgroundTask | None:
        """Queue the ticket's note (for a new request, or a repeat from another ticket); deliver it after.

        The note is keyed by request and ticket: the same webhook again queues nothing, but its
        delivery retries whatever of the request's notes is still pending. A ledger failure while
        queuing propagates (503: Zendesk sends the webhook again, and the repeat queues the note).
        """
        if self._comment is None or order.zendesk_ticket is None:
            return None
        repeat_here = done.duplicate and done.ticket_ref == order.ticket_ref
        comments.enqueue_comment(
            self._ledger,
            key=f"{INTAKE_NOTE}:{done.request_id}:{order.ticket_ref}",
            request_id=done.request_id,
            ticket_ref=order.ticket_ref,
            kind=INTAKE_NOTE,
            body=self._note(order.language, replace(done, duplicate=done.duplicate and not repeat_here)),
        )
        return BackgroundTask(self._comment_back, self._comment, done.request_id)

    def _comment_back(self, comment: Commenter, request_id: str) -> None:
        """Deliver the request's pending notes; each outcome is a ledger event (dsar.comments)."""
        try:
            comments.deliver_comments(self._ledger, comment, request_id=request_id)
        except Exception as exc:  # the ledger failed: the note stays queued for the next delivery
            log.warning("intake: delivering notes for %s failed (%s)", request_id, type(exc).__name__)

    def _note(self, language: str, done: intake.Registered) -> str:
        """The note's text: request id and due date, no personal data."""
        if self._renderer is None:
            self._renderer = DocumentRenderer(self._settings.templates_dir)
        title, body = self._renderer.render_mail(
            "ticket_comment",
            language,
            reference=done.request_id,
            request_type=done.request_type.value,
            due=date.fromisoformat(done.due_date),
            repeated=done.duplicate,
        )
        return f"{title}\n\n{body}"

    def _record(self, request_id: str, kind: str, data: dict[str, Any]) -> None:
        self._ledger.transaction(
            lambda session: append_event(session, request_id=request_id, kind=kind, data=data)
        )


# ---- edges -----------------------------------------------------------------------------------------


def _guarded(handler: Endpoint) -> Endpoint:
    """Turn refusals and failures into one-line JSON answers, with nothing personal logged."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except Refused as exc:
            return _error(exc.status, exc.reason)
        except ClientDisconnect:
            return _error(400, "the request body was cut off")
        except SQLAlchemyError as exc:
            log.error("intake: the ledger failed (%s)", type(exc).__name__)
            return _error(503, "the ledger is unavailable; try again later")
        except Exception as exc:  # the last line: a 500 without a traceback that could hold data
            log.error("intake: unexpected failure (%s)", type(exc).__name__)
            return _error(500, "internal error")

    return endpoint


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, as JSON."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})

"""The subject's side of identity verification, served by ``dsar serve`` beside the intake.

Routes::

    GET  /identity/login/{token}   the personal BankID link: redirects to the broker (302)
    GET  /identity/oidc/callback   the broker's redirect back: verifies and shows the outcome
    GET  /identity/code/{token}    the page where the e-mailed code is typed
    POST /identity/code/{token}    checks it

Pages are short, in the request's language, and show no personal data; refusals are 4xx with
a reason code, never a 500. A verification that arrives after the flow stopped waiting starts
the flow again through ``restart`` (injected: tests need no Prefect).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from dsar.documents import DocumentRenderer
from dsar.identity import bankid, email_code
from dsar.identity.answers import Answer
from dsar.ledger import Ledger
from dsar.ledger.chain import append_event
from dsar.settings import Settings
from integrations.oidc import OidcClient

__all__ = ["Restarter", "create_identity_app", "identity_routes"]

log = logging.getLogger(__name__)

Restarter = Callable[[str, str], None]  # (request id, request type): start the request's flow again
MAX_FORM_BYTES = 1024


def identity_routes(
    ledger: Ledger, settings: Settings, *, restart: Restarter, oidc: OidcClient | None = None
) -> list[Route]:
    """The routes, for mounting into the intake app."""
    pages = _Pages(ledger, settings, restart, oidc)
    return [
        Route("/identity/login/{token}", pages.login, methods=["GET"]),
        Route(bankid.CALLBACK_PATH, pages.callback, methods=["GET"]),
        Route("/identity/code/{token}", pages.code_form, methods=["GET"]),
        Route("/identity/code/{token}", pages.code_answer, methods=["POST"]),
    ]


def create_identity_app(ledger: Ledger, settings: Settings, *, restart: Restarter) -> Starlette:
    return Starlette(routes=identity_routes(ledger, settings, restart=restart))


class _Pages:
    def __init__(
        self, ledger: Ledger, settings: Settings, restart: Restarter, oidc: OidcClient | None
    ) -> None:
        self._ledger, self._settings, self._restart = ledger, settings, restart
        self._oidc = (
            oidc if oidc is not None or not settings.oidc_configured else bankid.oidc_client(settings)
        )
        self._oidc_lock = threading.Lock()  # the OIDC client caches metadata and keys; it is not thread-safe
        self._renderer = DocumentRenderer(settings.templates_dir)

    def _begin(self, oidc: OidcClient, token: str) -> str | Answer:
        with self._oidc_lock:
            return bankid.begin_login(self._ledger, oidc, token=token, now=datetime.now(UTC))

    def _finish(self, oidc: OidcClient, params: dict[str, str]) -> Answer:
        with self._oidc_lock:
            return bankid.finish_login(self._ledger, oidc, params=params, now=datetime.now(UTC))

    async def login(self, request: Request) -> Response:
        if self._oidc is None:
            return self._page(Answer(verified=False, reason="bankid_not_configured"), 404)
        target = await run_in_threadpool(self._begin, self._oidc, request.path_params["token"])
        if isinstance(target, Answer):
            return self._page(target, 404 if target.reason == "unknown_link" else 400)
        return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store"})

    async def callback(self, request: Request) -> Response:
        if self._oidc is None:
            return self._page(Answer(verified=False, reason="bankid_not_configured"), 404)
        params = {k: v for k, v in request.query_params.items() if k in ("code", "state", "error")}
        answer = await run_in_threadpool(self._finish, self._oidc, params)
        return self._settle(answer)

    async def code_form(self, request: Request) -> Response:
        token = request.path_params["token"]
        language = await run_in_threadpool(email_code.link_language, self._ledger, token)
        if language is None:
            return self._page(Answer(verified=False, reason="unknown_link"), 404)
        html = self._renderer.render_page("identity/code_form.html.j2", language, failed=None)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def code_answer(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return self._page(Answer(verified=False, reason="form_too_large"), 413)
        try:
            fields = parse_qs(body.decode("ascii"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            return self._page(Answer(verified=False, reason="malformed_form"), 400)
        code = (fields.get("code") or [""])[0]
        answer = await run_in_threadpool(
            email_code.check_code,
            self._ledger,
            self._settings,
            token=request.path_params["token"],
            code=code,
            now=datetime.now(UTC),
        )
        if answer.reason == "wrong_code":  # the form again, with a warning
            html = self._renderer.render_page("identity/code_form.html.j2", answer.language, failed=True)
            return HTMLResponse(html, status_code=400, headers={"Cache-Control": "no-store"})
        return self._settle(answer)

    def _settle(self, answer: Answer) -> Response:
        """Show the outcome; start the flow again if it had stopped waiting."""
        if answer.verified and answer.restart and answer.request_id and answer.request_type:
            try:
                self._restart(answer.request_id, answer.request_type)
            except Exception as exc:  # recorded, and the reconciler / deadline watch sees the request
                log.error("identity: could not restart %s (%s)", answer.request_id, type(exc).__name__)
                with self._ledger.session() as session:
                    append_event(
                        session,
                        request_id=answer.request_id,
                        kind="request.start_failed",
                        data={"error": type(exc).__name__, "after": "identity.verified"},
                    )
        status = 200 if answer.verified else (404 if answer.reason == "unknown_or_used_state" else 400)
        return self._page(answer, status)

    def _page(self, answer: Answer, status: int) -> HTMLResponse:
        html = self._renderer.render_page("identity/outcome.html.j2", answer.language, answer=answer)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

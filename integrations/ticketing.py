"""Writing back to the ticket a request arrived in (the intake endpoint's receipt for the agent).

Only Zendesk so far: an internal note (``public: false``) added with the Update Ticket call,
``PUT /api/v2/tickets/{id}`` with ``{"ticket": {"comment": {"body": ..., "public": false}}}``
(Zendesk also takes the path with ``.json``; its OpenAPI file has none), authenticated with an
API token as Basic ``{email}/token:{token}``. A file goes with a note in two calls, as Zendesk
documents: ``POST /api/v2/uploads?filename=<name>`` with the raw bytes (``Content-Type:
application/binary``) answers 201 ``{"upload": {"token": ...}}``, and the note names the token in
``"uploads": [token]``. Errors are those of :mod:`integrations.http`,
retries included (a retry after a timeout may add the note twice; losing it would be worse).
The comment text is the caller's and must hold no personal data.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import httpx

from integrations.http import DEFAULT_POLICY, HttpPolicy, VendorHttp
from integrations.zendesk_api import HeaderAuth

__all__ = ["ZendeskTickets"]


class ZendeskTickets:
    """Internal notes on Zendesk tickets, through the one HTTP edge (:class:`VendorHttp`)."""

    system = "zendesk-tickets"

    def __init__(
        self,
        base_url: str,
        email: str,
        token: str,
        policy: HttpPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        basic = base64.b64encode(f"{email}/token:{token}".encode()).decode()
        self._http = VendorHttp(
            system=self.system,
            base_url=base_url,
            policy=policy,
            auth=HeaderAuth(f"Basic {basic}"),
            transport=transport,
            sleep=sleep,
        )

    def comment(self, ticket_id: str, body: str) -> None:
        """Add ``body`` to the ticket as an internal note (not shown to the requester)."""
        self._note(_checked(ticket_id), {"body": body, "public": False})

    def attach(self, ticket_id: str, filename: str, content: bytes, body: str) -> None:
        """Upload ``content`` as ``filename`` and add it to the ticket with ``body``, as an internal note."""
        ticket_id = _checked(ticket_id)
        token = self._upload(filename, content)
        self._note(ticket_id, {"body": body, "uploads": [token], "public": False})

    def _upload(self, filename: str, content: bytes) -> str:
        """Upload one file; return its token (valid for one comment)."""
        response = self._http.request(
            "POST",
            "/api/v2/uploads",
            params={"filename": filename},
            content=content,
            headers={"Content-Type": "application/binary"},
            expected=(201, 200),
        )
        upload = self._http.parse_object(response).get("upload")
        token = upload.get("token") if isinstance(upload, dict) else None
        if not isinstance(token, str) or not token:
            raise self._http.malformed(response, "upload without a token")
        return token

    def _note(self, ticket_id: str, comment: dict[str, object]) -> None:
        """Update the ticket with ``comment``; the answer must carry the ticket."""
        payload = {"ticket": {"comment": comment}}
        response = self._http.request("PUT", f"/api/v2/tickets/{ticket_id}", json=payload)
        if not isinstance(self._http.parse_object(response).get("ticket"), dict):
            raise self._http.malformed(response, "ticket update without a ticket")

    def close(self) -> None:
        """Release connections."""
        self._http.close()

    def __repr__(self) -> str:
        return "ZendeskTickets(<masked>)"


def _checked(ticket_id: str) -> str:
    """``ticket_id`` if it is a Zendesk ticket id (a number), else ValueError."""
    if not (ticket_id.isascii() and ticket_id.isdigit()):
        raise ValueError("a Zendesk ticket id is a number")
    return ticket_id

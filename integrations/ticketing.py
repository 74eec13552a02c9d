"""Writing back to the ticket a request arrived in (the intake endpoint's receipt for the agent).

Only Zendesk so far: an internal note (``public: false``) added with the Update Ticket call,
``PUT /api/v2/tickets/{id}`` with ``{"ticket": {"comment": {"body": ..., "public": false}}}``
(Zendesk also takes the path with ``.json``; its OpenAPI file has none), authenticated with an
API token as Basic ``{email}/token:{token}``. Errors are those of :mod:`integrations.http`,
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
        if not (ticket_id.isascii() and ticket_id.isdigit()):
            raise ValueError("a Zendesk ticket id is a number")
        payload = {"ticket": {"comment": {"body": body, "public": False}}}
        response = self._http.request("PUT", f"/api/v2/tickets/{ticket_id}", json=payload)
        if not isinstance(self._http.parse_object(response).get("ticket"), dict):
            raise self._http.malformed(response, "ticket update without a ticket")

    def close(self) -> None:
        """Release connections."""
        self._http.close()

    def __repr__(self) -> str:
        return "ZendeskTickets(<masked>)"

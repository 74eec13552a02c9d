"""A stand-in for the data subject: reads the mail the pipeline sends them and answers it.

The demo runs unattended, so its "subject" does what a person would: opens the personal
BankID link from the identity mail and logs in at the (emulated) broker, which sends the
browser back to ``dsar``'s callback. Tests use it to drive the same path over real HTTP.
"""

from __future__ import annotations

import re

import httpx

from emulators.mailbox import Mailbox
from emulators.poller import Poller

__all__ = ["DataSubject"]

LOGIN_LINK = re.compile(r"https?://\S+/identity/login/[A-Za-z0-9_-]+")


class DataSubject(Poller):
    """Follows every BankID link mailed to ``address``, once each, until stopped."""

    def __init__(self, mailbox: Mailbox, address: str, *, poll_s: float = 0.2) -> None:
        super().__init__(poll_s=poll_s, name="demo-subject")
        self._mailbox, self._address = mailbox, address.lower()
        self._seen: set[str] = set()
        self._browser = httpx.Client(follow_redirects=True, timeout=30)
        self.followed: list[int] = []  # HTTP status of the page shown after each login

    def poll(self) -> None:
        for message in self._mailbox.to(self._address):
            for link in LOGIN_LINK.findall(message.get_content()):
                if link not in self._seen:
                    self._seen.add(link)
                    self.followed.append(self._browser.get(link).status_code)

    def teardown(self) -> None:
        self._browser.close()

"""A stand-in for the data subject: reads the mail the pipeline sends them and answers it.

The demo runs unattended, so its "subject" does what a person would: opens the personal
BankID link from the identity mail and logs in at the (emulated) broker, which sends the
browser back to ``dsar``'s callback. Tests use it to drive the same path over real HTTP.
"""

from __future__ import annotations

import re
import threading

import httpx

from emulators.mailbox import Mailbox

__all__ = ["DataSubject"]

LOGIN_LINK = re.compile(r"https?://\S+/identity/login/[A-Za-z0-9_-]+")


class DataSubject:
    """Follows every BankID link mailed to ``address``, once each, until stopped."""

    def __init__(self, mailbox: Mailbox, address: str, *, poll_s: float = 0.2) -> None:
        self._mailbox, self._address, self._poll_s = mailbox, address.lower(), poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-subject", daemon=True)
        self.followed: list[int] = []  # HTTP status of the page shown after each login

    def __enter__(self) -> DataSubject:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        seen: set[str] = set()
        with httpx.Client(follow_redirects=True, timeout=30) as browser:
            while not self._stop.wait(self._poll_s):
                for message in self._mailbox.to(self._address):
                    for link in LOGIN_LINK.findall(message.get_content()):
                        if link not in seen:
                            seen.add(link)
                            self.followed.append(browser.get(link).status_code)

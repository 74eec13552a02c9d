"""Mails to the data subject about their identity: the challenge, the reminder, the closing letter.

The challenge carries a secret (a personal link, an e-mail code), so it is sent at once and
never kept, not even in the encrypted outbox: the ledger holds only its hash. If sending fails
the challenge is withdrawn and the step is retried with a new one. The reminder and the
closing letter hold no secret and go through the outbox (once each).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dsar import outbox
from dsar.calendar import OSLO
from dsar.identity.checks import Challenge
from dsar.runtime import Runtime
from integrations.mail import Mail, Mailer

__all__ = ["SubjectLetter", "challenge_links", "send_challenge", "send_letter"]


@dataclass(frozen=True)
class SubjectLetter:
    """A secret-free letter to the subject (reminder, identity not confirmed)."""

    kind: str  # identity_reminder | identity_unconfirmed
    request_id: str


def challenge_links(public_url: str, challenge: Challenge) -> str:
    """The subject's personal link: the BankID login, or the page where the code is typed."""
    base = public_url.rstrip("/")
    if challenge.method == "bankid":
        return f"{base}/identity/login/{challenge.link_token}"
    return f"{base}/identity/code/{challenge.link_token}"


def send_challenge(
    rt: Runtime,
    *,
    request_id: str,
    to: str,
    language: str,
    challenge: Challenge,
    expires: datetime,
    reminder: bool = False,
) -> None:
    """Send the challenge now (raises an integration error if the mail server refuses)."""
    subject_line, body = rt.renderer.render_mail(
        "identity_request",
        language,
        method=challenge.method,
        link=challenge_links(rt.settings.public_url, challenge),
        code=challenge.code,
        expires=expires.astimezone(OSLO),
        attempts=rt.settings.identity_code_attempts,
        reminder=reminder,
        reference=request_id,
        controller=rt.controller,
    )
    message_id = f"<{request_id}.identity-{challenge.check_id}@dsar-pipeline>"
    Mailer(rt.settings.smtp()).send(Mail(to=to, subject=subject_line, body=body, message_id=message_id))


def send_letter(rt: Runtime, letter: SubjectLetter, *, to: str, language: str, check_id: int) -> bool:
    """Queue and deliver a letter through the outbox; False if it was queued before."""
    subject_line, body = rt.renderer.render_mail(
        letter.kind,
        language,
        reference=letter.request_id,
        controller=rt.controller,
        reopen_days=rt.settings.identity_close_after_days,
    )
    message_id = f"<{letter.request_id}.{letter.kind}-{check_id}@dsar-pipeline>"
    mail = Mail(to=to, subject=subject_line, body=body, message_id=message_id)
    queued = outbox.enqueue(rt.ledger, request_id=letter.request_id, kind=letter.kind, mail=mail)
    outbox.deliver(rt.ledger, Mailer(rt.settings.smtp()), request_id=letter.request_id)
    return queued

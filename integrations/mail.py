"""Sending e-mail over SMTP: processor requests, Art. 19 notices, alerts, letters.

One :class:`Mailer` per process, configured from settings. Failures are translated into the
integration error tree: a server that is down or busy is retryable; a refused recipient or
bad credentials are permanent. A message carries a caller-chosen ``Message-ID`` so the
ledger can tell whether a given mail was already sent.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from integrations.errors import AuthError, PermanentError, RetryableError

__all__ = ["Mail", "Mailer", "SmtpConfig"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "personvern@fjordlys.example"
    timeout_s: float = 20.0

    def __repr__(self) -> str:
        return f"SmtpConfig({self.host}:{self.port}, {self.security})"


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str
    message_id: str  # "<...@...>", chosen by the caller so a resend can be recognised

    def __repr__(self) -> str:
        return f"Mail({self.message_id})"


class Mailer:
    """Sends mail through one SMTP server."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config

    def send(self, mail: Mail) -> None:
        """Deliver one message to the SMTP server, or raise an integration error."""
        message = self._message(mail)
        try:
            with self._connect() as smtp:
                if self.config.username:
                    smtp.login(self.config.username, self.config.password or "")
                smtp.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise AuthError("SMTP credentials refused", system="smtp", status_code=exc.smtp_code) from None
        except smtplib.SMTPRecipientsRefused:
            raise PermanentError("SMTP server refused the recipient", system="smtp") from None
        except smtplib.SMTPResponseException as exc:
            error = RetryableError if exc.smtp_code >= 400 and exc.smtp_code < 500 else PermanentError
            raise error("SMTP server refused the message", system="smtp", status_code=exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RetryableError(f"SMTP server unreachable ({type(exc).__name__})", system="smtp") from None

    def _message(self, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.config.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=True)
        message["Message-ID"] = mail.message_id
        message.set_content(mail.body)
        return message

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "tls":
            return smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout_s, context=ssl.create_default_context())
        smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout_s)
        if c.security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        return smtp

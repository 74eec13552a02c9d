"""The one error tree every integration raises.

    IntegrationError                    base; message never carries personal data
    ├── RetryableError                  timeouts, connection errors, 429, 5xx: try again later
    │   └── RateLimited                 429; ``retry_after`` seconds if the vendor said so
    ├── PermanentError                  4xx, malformed bodies, misconfiguration: retrying will not help
    │   ├── AuthError                   401/403, rejected or expired credentials
    │   └── MalformedResponse           the vendor answered something we cannot parse
    ├── SubjectNotFound                 the system positively answered that the subject is not there
    └── NeedsOperator                   no API: a named operator must look, act and record the answer

``ConfigurationError`` stands outside the tree: it is raised before any system is called,
when the systems file or a system's options are wrong.

Clients translate ``httpx`` (or SQLAlchemy) errors into this tree once, at the edge, with
``raise ... from exc``. Flows and tasks only ever see these classes.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigurationError",
    "IntegrationError",
    "MalformedResponse",
    "NeedsOperator",
    "PermanentError",
    "RateLimited",
    "RetryableError",
    "SubjectNotFound",
    "is_retryable",
]


class ConfigurationError(ValueError):
    """The systems file or a system's options are wrong; the message names the system."""


class IntegrationError(Exception):
    """Base of every integration error. ``system`` names the configured system."""

    def __init__(self, message: str, *, system: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.system = system
        self.status_code = status_code

    def summary(self) -> str:
        """A one-line, PII-free description for the ledger and for Prefect."""
        code = f" HTTP {self.status_code}" if self.status_code else ""
        return f"{type(self).__name__}{code}: {self}"


class RetryableError(IntegrationError):
    """A transient failure: timeouts, connection errors, 5xx."""

    def __init__(
        self,
        message: str,
        *,
        system: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, system=system, status_code=status_code)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """HTTP 429. ``retry_after`` holds the vendor's Retry-After in seconds, if any."""


class PermanentError(IntegrationError):
    """A failure that retrying will not fix."""


class AuthError(PermanentError):
    """Credentials were rejected (401/403) or could not be obtained."""


class MalformedResponse(PermanentError):
    """The vendor answered with a body we could not understand."""


class SubjectNotFound(IntegrationError):
    """The system answered definitely that it holds nothing for the subject."""


class NeedsOperator(IntegrationError):
    """The system has no API for this step; the flow asks an operator and records the answer.

    ``instructions`` tell the operator where to look (no personal data); ``processor_contact``
    is the e-mail of a processor to ask on the controller's behalf before answering.
    """

    def __init__(
        self, message: str, *, system: str, instructions: str, processor_contact: str | None = None
    ) -> None:
        super().__init__(message, system=system)
        self.instructions = instructions
        self.processor_contact = processor_contact


def is_retryable(exc: BaseException) -> bool:
    """True when ``exc`` is worth another attempt later."""
    return isinstance(exc, RetryableError)

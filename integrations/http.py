"""The one HTTP edge every vendor integration goes through.

:class:`VendorHttp` wraps an :class:`httpx.Client` and does three things once, here, so no
integration repeats them:

* translates ``httpx`` failures and HTTP statuses into :mod:`integrations.errors`
  (``raise ... from exc``)::

      timeout, connection error  -> RetryableError
      429                        -> RateLimited (retry_after from Retry-After)
      5xx                        -> RetryableError (retry_after from Retry-After, if any)
      401, 403                   -> AuthError
      other 4xx, unexpected 2xx  -> PermanentError / MalformedResponse
      body not a JSON object     -> MalformedResponse

* retries what is retryable (with ``tenacity``), honouring ``Retry-After`` up to a cap and
  otherwise backing off exponentially;
* keeps personal data out of errors and logs: they name the system, the method, the status
  and the attempt, never a URL, a query string or a response body.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from integrations.errors import (
    AuthError,
    IntegrationError,
    MalformedResponse,
    PermanentError,
    RateLimited,
    RetryableError,
)
from integrations.tls import tls_context

__all__ = ["DEFAULT_POLICY", "BearerAuth", "HttpPolicy", "Params", "VendorHttp", "parse_retry_after"]


class _NoQueryInHttpxLog(logging.Filter):
    """Drop query strings from httpx's "HTTP Request: GET <url>" lines: searches put e-mails there."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's URL arguments without their query; never drop a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.copy_with(query=None) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


_HTTPX_LOG = logging.getLogger("httpx")
if not any(isinstance(f, _NoQueryInHttpxLog) for f in _HTTPX_LOG.filters):
    _HTTPX_LOG.addFilter(_NoQueryInHttpxLog())


log = logging.getLogger(__name__)

Params = Mapping[str, str | int | float | bool | None]


@dataclass(frozen=True)
class HttpPolicy:
    """Timeouts and retry behaviour for one vendor client."""

    timeout_s: float = 10.0
    max_attempts: int = 4
    retry_after_cap_s: float = 60.0
    backoff_base_s: float = 0.5


DEFAULT_POLICY = HttpPolicy()


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``; the token never shows in ``repr``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Attach the bearer token to ``request``."""
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(<masked>)"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date), or None."""
    if not value or not value.strip():
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return _seconds_until(value.strip(), now or datetime.now(UTC))
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _seconds_until(http_date: str, now: datetime) -> float | None:
    """Seconds from ``now`` until an HTTP-date, never negative; None if unparseable."""
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class _WaitRetryAfter:
    """A tenacity wait: the vendor's Retry-After (capped) if given, else exponential backoff."""

    def __init__(self, policy: HttpPolicy) -> None:
        self._policy = policy

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        cap = self._policy.retry_after_cap_s
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, cap)
        return float(min(self._policy.backoff_base_s * 2 ** (state.attempt_number - 1), cap))


class VendorHttp:
    """An ``httpx.Client`` for one configured system, with error translation and retries."""

    def __init__(
        self,
        *,
        system: str,
        base_url: str,
        policy: HttpPolicy = DEFAULT_POLICY,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.system = system
        self.policy = policy
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url,
            auth=auth,
            verify=tls_context(),
            headers={"Accept": "application/json", "User-Agent": "dsar-pipeline", **(headers or {})},
            timeout=policy.timeout_s,
            transport=transport,
            follow_redirects=False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
        expected: Collection[int] = (200,),
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one request, retrying retryable failures; return a response with an expected status.

        ``headers`` add to or replace the client's headers for this request only (e.g. a JSON
        Patch ``Content-Type``); ``content`` is a raw body, sent instead of ``json``.
        """
        attempts = self.policy.max_attempts if retry else 1
        retrying = Retrying(
            stop=stop_after_attempt(max(1, attempts)),
            wait=_WaitRetryAfter(self.policy),
            retry=retry_if_exception_type(RetryableError),
            sleep=self._sleep,
            before_sleep=self._log_retry(method, attempts),
            reraise=True,
        )
        return retrying(self._send_once, method, path, params, json, expected, headers, content)

    def get_json(
        self, path: str, *, params: Params | None = None, expected: Collection[int] = (200,)
    ) -> dict[str, Any]:
        """GET ``path`` and return its body, which must be a JSON object."""
        return self.parse_object(self.request("GET", path, params=params, expected=expected))

    def post_json(
        self,
        path: str,
        json: Any,
        *,
        params: Params | None = None,
        expected: Collection[int] = (200,),
    ) -> dict[str, Any]:
        """POST ``json`` to ``path`` and return the answer, which must be a JSON object."""
        return self.parse_object(self.request("POST", path, params=params, json=json, expected=expected))

    def parse_object(self, response: httpx.Response) -> dict[str, Any]:
        """The body of ``response`` as a JSON object, or MalformedResponse."""
        try:
            body = response.json()
        except ValueError as exc:
            raise self.malformed(response, "body is not JSON") from exc
        if not isinstance(body, dict):
            raise self.malformed(response, "body is not a JSON object")
        return body

    def malformed(self, response: httpx.Response, what: str) -> MalformedResponse:
        """A MalformedResponse for ``response``; ``what`` must not hold personal data."""
        message = self._message(response.request.method, response.status_code, what)
        return MalformedResponse(message, system=self.system, status_code=response.status_code)

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send_once(
        self,
        method: str,
        path: str,
        params: Params | None,
        json: Any,
        expected: Collection[int],
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One attempt: send, translate transport errors and unexpected statuses."""
        try:
            response = self._client.request(
                method, path, params=_clean(params), json=json, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise RetryableError(self._message(method, None, "timed out"), system=self.system) from exc
        except httpx.TransportError as exc:
            what = f"transport error ({type(exc).__name__})"
            raise RetryableError(self._message(method, None, what), system=self.system) from exc
        except httpx.HTTPError as exc:
            what = f"unreadable answer ({type(exc).__name__})"
            raise MalformedResponse(self._message(method, None, what), system=self.system) from exc
        log.debug("%s %s -> HTTP %s", self.system, method, response.status_code)
        if response.status_code in expected:
            return response
        raise self._status_error(method, response)

    def _status_error(self, method: str, response: httpx.Response) -> IntegrationError:
        """Translate an unexpected status into the error tree."""
        status = response.status_code
        if status == 429 or status >= 500:
            cls = RateLimited if status == 429 else RetryableError
            what = "rate limited" if status == 429 else "server error"
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            message = self._message(method, status, what)
            return cls(message, system=self.system, status_code=status, retry_after=retry_after)
        if status in (401, 403):
            return AuthError(
                self._message(method, status, "credentials rejected"), system=self.system, status_code=status
            )
        if 400 <= status < 500:
            return PermanentError(
                self._message(method, status, "request refused"), system=self.system, status_code=status
            )
        return MalformedResponse(
            self._message(method, status, "unexpected status"), system=self.system, status_code=status
        )

    def _message(self, method: str, status: int | None, what: str) -> str:
        """A PII-free message: system, method, status and a fixed description only."""
        code = f" HTTP {status}" if status is not None else ""
        return f"{self.system}: {method}{code}: {what}"

    def _log_retry(self, method: str, attempts: int) -> Callable[[RetryCallState], None]:
        """A tenacity hook that logs each retry with system, method, status and attempt only."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            status = exc.status_code if isinstance(exc, IntegrationError) else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s %s attempt %d/%d failed (HTTP %s); retrying in %.1fs",
                self.system,
                method,
                state.attempt_number,
                attempts,
                status,
                wait,
            )

        return before_sleep


def _clean(params: Params | None) -> dict[str, str | int | float | bool] | None:
    """Drop None values so optional query parameters can be passed as-is."""
    if params is None:
        return None
    return {key: value for key, value in params.items() if value is not None}

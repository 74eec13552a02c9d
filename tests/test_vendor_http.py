"""VendorHttp: error translation, Retry-After, backoff and PII-free messages, via MockTransport."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from integrations.errors import (
    AuthError,
    IntegrationError,
    MalformedResponse,
    PermanentError,
    RateLimited,
    RetryableError,
)
from integrations.http import DEFAULT_POLICY, BearerAuth, HttpPolicy, VendorHttp, parse_retry_after

EMAIL = "kari.nordmann@example.no"
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers from a script of responses (the last repeats) and records requests and waits."""

    def __init__(self, *responses: httpx.Response | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, policy: HttpPolicy = DEFAULT_POLICY, **kwargs: object) -> VendorHttp:
        return VendorHttp(
            system="crm-test",
            base_url="https://vendor.test",
            policy=policy,
            transport=httpx.MockTransport(self.handle),
            sleep=self.waits.append,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture
def ok() -> httpx.Response:
    return httpx.Response(200, json={"results": []})


def _json(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"message": f"no such contact {EMAIL}"}, headers=headers)


def _assert_clean(exc: IntegrationError) -> None:
    """Neither the message nor the summary carries the e-mail, a query string or a body."""
    for text in (str(exc), exc.summary(), repr(exc)):
        assert EMAIL not in text
        assert "?" not in text
        assert "no such contact" not in text
    assert exc.system == "crm-test"


def test_get_json_returns_object_and_sends_auth(ok: httpx.Response) -> None:
    rec = Recorder(ok)
    body = rec.client(auth=BearerAuth("s3cret")).get_json("/contacts", params={"email": EMAIL, "x": None})
    assert body == {"results": []}
    assert rec.requests[0].headers["Authorization"] == "Bearer s3cret"
    assert rec.requests[0].url.params.get("email") == EMAIL
    assert "x" not in rec.requests[0].url.params
    assert "s3cret" not in repr(BearerAuth("s3cret"))


def test_429_with_retry_after_waits_then_succeeds(ok: httpx.Response) -> None:
    rec = Recorder(_json(429, {"Retry-After": "2"}), ok)
    assert rec.client().post_json("/search", {"q": EMAIL}) == {"results": []}
    assert rec.waits == [2.0]
    assert len(rec.requests) == 2


def test_retry_after_http_date(ok: httpx.Response) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    rec = Recorder(_json(503, {"Retry-After": when}), ok)
    rec.client().get_json("/x")
    assert 28.0 <= rec.waits[0] <= 30.0


def test_retry_after_is_capped(ok: httpx.Response) -> None:
    rec = Recorder(_json(429, {"Retry-After": "3600"}), ok)
    rec.client(HttpPolicy(retry_after_cap_s=60.0)).get_json("/x")
    assert rec.waits == [60.0]


def test_5xx_backs_off_exponentially_then_gives_up() -> None:
    rec = Recorder(_json(500))
    with pytest.raises(RetryableError) as info:
        rec.client(HttpPolicy(max_attempts=4, backoff_base_s=0.5)).get_json(f"/contacts/{EMAIL}")
    assert len(rec.requests) == 4
    assert rec.waits == [0.5, 1.0, 2.0]
    assert info.value.status_code == 500
    assert not isinstance(info.value, RateLimited)
    _assert_clean(info.value)


def test_429_exhausted_is_rate_limited_with_retry_after() -> None:
    rec = Recorder(_json(429, {"Retry-After": "1"}))
    with pytest.raises(RateLimited) as info:
        rec.client(HttpPolicy(max_attempts=2)).get_json("/x", params={"email": EMAIL})
    assert info.value.retry_after == 1.0
    assert rec.waits == [1.0]
    _assert_clean(info.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthError),
        (403, AuthError),
        (400, PermanentError),
        (404, PermanentError),
        (302, MalformedResponse),
    ],
)
def test_permanent_statuses_are_not_retried(status: int, error: type[IntegrationError]) -> None:
    rec = Recorder(_json(status))
    with pytest.raises(error) as info:
        rec.client().get_json("/x", params={"email": EMAIL})
    assert len(rec.requests) == 1
    assert rec.waits == []
    assert info.value.status_code == status
    assert not isinstance(info.value, RetryableError)
    _assert_clean(info.value)


def test_expected_status_is_returned() -> None:
    rec = Recorder(httpx.Response(404))
    assert rec.client().request("POST", "/delete", json={"id": "1"}, expected=(204, 404)).status_code == 404


@pytest.mark.parametrize(
    "exc", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]
)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    rec = Recorder(exc)
    with pytest.raises(RetryableError) as info:
        rec.client(HttpPolicy(max_attempts=3)).get_json("/x", params={"email": EMAIL})
    assert len(rec.requests) == 3
    assert info.value.__cause__ is exc
    assert info.value.status_code is None
    _assert_clean(info.value)


def test_transport_error_then_success(ok: httpx.Response) -> None:
    rec = Recorder(httpx.ConnectError("refused"), ok)
    assert rec.client().get_json("/x") == {"results": []}
    assert rec.waits == [0.5]


def test_retry_false_makes_one_attempt() -> None:
    rec = Recorder(_json(503))
    with pytest.raises(RetryableError):
        rec.client().request("POST", "/x", retry=False)
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>oops " + EMAIL.encode()),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, content=b""),
    ],
)
def test_malformed_bodies(response: httpx.Response) -> None:
    rec = Recorder(response)
    with pytest.raises(MalformedResponse) as info:
        rec.client().get_json("/x", params={"email": EMAIL})
    assert len(rec.requests) == 1
    _assert_clean(info.value)


def test_logs_carry_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(_json(500), httpx.Response(200, json={}))
    with caplog.at_level(logging.DEBUG, logger="integrations.http"):
        rec.client().get_json(f"/contacts/{EMAIL}", params={"email": EMAIL})
    assert caplog.records
    assert all(EMAIL not in r.getMessage() and "vendor.test" not in r.getMessage() for r in caplog.records)
    assert any("crm-test GET attempt 1/4" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("2", 2.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_relative_to_now() -> None:
    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0


@pytest.fixture
def closing_client() -> Iterator[VendorHttp]:
    client = Recorder(httpx.Response(200, json={})).client()
    with client:
        yield client


def test_context_manager_closes(closing_client: VendorHttp) -> None:
    assert closing_client.get_json("/x") == {}

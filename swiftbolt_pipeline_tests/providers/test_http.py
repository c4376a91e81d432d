"""ResilientClient: one token per attempt, bounded retries with backoff, clear error codes."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from swiftbolt_pipeline.core import errors
from swiftbolt_pipeline.providers.http import RequestStats, ResilientClient, UnlimitedLimiter
from swiftbolt_pipeline_tests.providers.helpers import (
    KEY,
    NOW,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
    raw,
    status,
    truncated,
)

URL = "https://api.polygon.test/v2/thing"


def client(
    script: Script, *, max_attempts: int = 5, limiter: CountingLimiter | None = None, seed: int = 1
) -> tuple[ResilientClient, CountingLimiter, object]:
    clock = fake_clock()
    limiter = limiter or CountingLimiter()
    http = httpx.Client(transport=script.transport, headers={"Authorization": f"Bearer {KEY}"})
    c = ResilientClient(
        "polygon",
        http,
        limiter,
        clock,
        secrets=[KEY],
        max_attempts=max_attempts,
        rng=random.Random(seed),
    )
    return c, limiter, clock


def test_success_takes_one_token_and_no_sleep() -> None:
    script = Script(ok({"status": "OK", "x": 1}))
    c, limiter, clock = client(script, limiter=CountingLimiter(wait=0.25))
    stats = RequestStats()
    assert c.get_json(URL, stats, params={"a": "1"}) == {"status": "OK", "x": 1}
    assert (stats.requests, stats.retries, stats.rate_limited) == (1, 0, 0)
    assert stats.token_wait_s == 0.25
    assert limiter.calls == 1
    assert clock.sleeps == []
    assert str(script.requests[0].url) == URL + "?a=1"


def test_unlimited_limiter_never_waits() -> None:
    assert UnlimitedLimiter().acquire() == 0.0


@pytest.mark.parametrize("value", ["7", "0", "120"])
def test_429_retry_after_seconds_is_honoured_exactly(value: str) -> None:
    script = Script(status(429, {"Retry-After": value}), ok({"ok": True}))
    c, limiter, clock = client(script)
    stats = RequestStats()
    assert c.get_json(URL, stats) == {"ok": True}
    assert clock.sleeps == [float(value)]
    assert (stats.requests, stats.retries, stats.rate_limited) == (2, 1, 1)
    assert limiter.calls == 2


def test_429_retry_after_http_date_is_honoured_exactly() -> None:
    header = format_datetime(NOW + timedelta(seconds=20), usegmt=True)  # an IMF-fixdate
    assert header.endswith("GMT")
    script = Script(status(429, {"Retry-After": header}), ok({"ok": True}))
    c, _, clock = client(script)
    c.get_json(URL, RequestStats())
    assert clock.sleeps == [20.0]


def test_429_retry_after_asctime_date_is_retried_not_a_crash() -> None:
    header = (NOW + timedelta(seconds=20)).strftime("%a %b %d %H:%M:%S %Y")
    script = Script(status(429, {"Retry-After": header}), ok({"ok": True}))
    c, _, clock = client(script)
    assert c.get_json(URL, RequestStats()) == {"ok": True}
    assert clock.sleeps == [20.0]


def test_429_without_retry_after_backs_off_exponentially_then_gives_up() -> None:
    for seed in range(20):
        script = Script(status(429, body={"status": "ERROR", "error": "exceeded"}))
        c, limiter, clock = client(script, max_attempts=6, seed=seed)
        stats = RequestStats()
        with pytest.raises(errors.ProviderError) as info:
            c.get_json(URL, stats)
        assert info.value.code == errors.RATE_LIMIT_EXCEEDED
        assert info.value.requests == 6 == len(script.requests) == limiter.calls
        assert (stats.retries, stats.rate_limited) == (5, 6)
        assert len(clock.sleeps) == 5  # no pointless sleep after the last attempt
        for attempt, slept in enumerate(clock.sleeps, start=1):
            ceiling = min(30.0, 2.0 ** (attempt - 1))
            assert ceiling / 2 <= slept <= ceiling


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_server_errors_are_retried(code: int) -> None:
    script = Script(status(code), status(code), ok({"ok": 1}))
    c, limiter, clock = client(script)
    stats = RequestStats()
    assert c.get_json(URL, stats) == {"ok": 1}
    assert stats.requests == 3 == limiter.calls == len(script.requests)
    assert stats.retries == 2 and stats.rate_limited == 0
    assert 0.5 <= clock.sleeps[0] <= 1 and 1 <= clock.sleeps[1] <= 2


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("reset by peer"),
    ],
)
def test_transport_failures_are_retried(exc: Exception) -> None:
    script = Script(exc, ok({"ok": 1}))
    c, limiter, clock = client(script)
    stats = RequestStats()
    assert c.get_json(URL, stats) == {"ok": 1}
    assert stats.requests == 2 == limiter.calls
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    "step",
    [status(503), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
    ids=["503", "timeout", "connect"],
)
def test_bounded_attempts_end_in_provider_unavailable(step: object) -> None:
    script = Script(step)  # type: ignore[arg-type]
    c, limiter, clock = client(script, max_attempts=3)
    stats = RequestStats()
    with pytest.raises(errors.ProviderError) as info:
        c.get_json(URL, stats)
    assert info.value.code == errors.PROVIDER_UNAVAILABLE
    assert info.value.provider == "polygon"
    assert info.value.requests == 3 == len(script.requests) == limiter.calls == stats.requests
    assert "after 3 attempts" in str(info.value)
    assert len(clock.sleeps) == 2


def test_mixed_failures_report_the_last_problem() -> None:
    script = Script(status(429), status(503), httpx.ReadTimeout("x"), status(429))
    c, _, _ = client(script, max_attempts=4)
    with pytest.raises(errors.ProviderError) as info:
        c.get_json(URL, RequestStats())
    assert info.value.code == errors.RATE_LIMIT_EXCEEDED
    assert info.value.requests == 4


@pytest.mark.parametrize("code", [401, 403])
def test_auth_failures_are_not_retried(code: int) -> None:
    script = Script(status(code), ok({}))
    c, limiter, clock = client(script)
    with pytest.raises(errors.ProviderError) as info:
        c.get_json(URL, RequestStats())
    assert info.value.code == errors.AUTH_FAILED
    assert info.value.requests == 1 == len(script.requests) == limiter.calls
    assert clock.sleeps == []


@pytest.mark.parametrize("code", [400, 404, 422])
def test_other_client_errors_are_not_retried(code: int) -> None:
    script = Script(raw(f'{{"error": "bad key {KEY} in request"}}', code), ok({}))
    c, _, clock = client(script)
    with pytest.raises(errors.ProviderError) as info:
        c.get_json(URL, RequestStats())
    assert info.value.code == errors.BAD_REQUEST
    assert info.value.requests == 1 and clock.sleeps == []
    assert f"HTTP {code}" in str(info.value)
    assert KEY not in str(info.value) and KEY not in info.value.message
    assert "bad key *** in request" in str(info.value)


def test_truncated_json_is_retried_then_succeeds() -> None:
    body = {"status": "OK", "results": [{"t": 1}] * 20}
    script = Script(truncated(body), ok(body))
    c, limiter, _ = client(script)
    stats = RequestStats()
    assert c.get_json(URL, stats) == body
    assert stats.requests == 2 == limiter.calls


def test_always_truncated_json_is_malformed_response() -> None:
    script = Script(truncated({"status": "OK", "results": [1, 2, 3]}))
    c, limiter, _ = client(script, max_attempts=3)
    with pytest.raises(errors.ProviderError) as info:
        c.get_json(URL, RequestStats())
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert info.value.requests == 3 == limiter.calls


def test_stats_accumulate_across_calls() -> None:
    script = Script(status(503), ok({"a": 1}), ok({"b": 2}))
    c, limiter, _ = client(script)
    stats = RequestStats()
    c.get_json(URL, stats)
    c.get_json(URL, stats)
    assert (stats.requests, stats.retries) == (3, 1)
    assert limiter.calls == 3
    total = RequestStats(1, 1, 1, 1.5)
    total.add(stats)
    assert (total.requests, total.retries, total.rate_limited, total.token_wait_s) == (4, 2, 1, 1.5)


def test_no_secret_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    leaky = [
        httpx.ConnectError(f"cannot reach https://x/?apiKey={KEY}"),
        httpx.ReadTimeout(f"timeout for Bearer {KEY}"),
        raw(f"<html>{KEY}", 503),
        status(429, {"Retry-After": "1"}, {"error": KEY}),
        raw(f'{{"status": "OK", "key": "{KEY}"'),
    ]
    script = Script(*leaky)
    c, _, _ = client(script, max_attempts=len(leaky))
    with pytest.raises(errors.ProviderError) as info:
        c.get_json(f"{URL}", RequestStats())
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert KEY not in info.value.message
    assert len(caplog.records) >= len(leaky) - 1
    for record in caplog.records:
        assert KEY not in record.getMessage()
    for code in (401, 404):
        script = Script(raw(f'{{"error": "{KEY}"}}', code))
        c, _, _ = client(script)
        with pytest.raises(errors.ProviderError) as info:
            c.get_json(URL, RequestStats())
        assert KEY not in str(info.value)

"""PolygonClient over httpx.MockTransport: request shape, pagination, validation, secrecy."""

from __future__ import annotations

import logging
import random
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import polars as pl
import pytest

from swiftbolt_pipeline.core.models import BAR_SCHEMA
from swiftbolt_pipeline.providers import errors
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline_tests.providers.helpers import (
    BASE,
    KEY,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
    raw,
    status,
)

FIRST, LAST = date(2024, 3, 4), date(2024, 3, 8)
T0 = int(datetime(2024, 3, 4, 14, 30, tzinfo=UTC).timestamp() * 1000)
STEP = 15 * 60 * 1000


def bar(i: int, **over: Any) -> dict[str, Any]:
    b = {"t": T0 + i * STEP, "o": 10.0 + i, "h": 11.5 + i, "l": 9.25 + i, "c": 10.5 + i,
         "v": 1000 + i, "vw": 10.4 + i, "n": 7 + i}  # fmt: skip
    return b | over


def page(bars: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ticker": "AAPL", "status": "OK", "resultsCount": len(bars)}
    if bars:
        body["results"] = bars
    if next_url:
        body["next_url"] = next_url
    return body


def cursor_url(n: int, host: str = BASE) -> str:
    return f"{host}/v2/aggs/ticker/AAPL/range/15/minute/{T0 + n * STEP}/2024-03-08?cursor=c{n}"


def polygon(script: Script, seed: int = 5) -> tuple[PolygonClient, CountingLimiter, Any]:
    clock = fake_clock()
    limiter = CountingLimiter()
    client = PolygonClient(
        BASE + "/", KEY, limiter, clock, transport=script.transport, rng=random.Random(seed)
    )
    return client, limiter, clock


def fetch(client: PolygonClient, stats: RequestStats | None = None) -> pl.DataFrame:
    try:
        return client.fetch_m15("AAPL", FIRST, LAST, stats or RequestStats())
    finally:
        client.close()


def test_first_request_shape_and_frame() -> None:
    script = Script(ok(page([bar(0), bar(1, vw=None, n=None)])))
    client, limiter, clock = polygon(script)
    frame = fetch(client)
    (req,) = script.requests
    assert req.url.path == "/v2/aggs/ticker/AAPL/range/15/minute/2024-03-04/2024-03-08"
    assert parse_qs(req.url.query.decode()) == {
        "adjusted": ["true"],
        "sort": ["asc"],
        "limit": ["50000"],
    }
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(req.url)
    assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert frame.to_dicts() == [
        {"ts": datetime(2024, 3, 4, 14, 30, tzinfo=UTC), "open": 10.0, "high": 11.5,
         "low": 9.25, "close": 10.5, "volume": 1000, "vwap": 10.4, "trade_count": 7},
        {"ts": datetime(2024, 3, 4, 14, 45, tzinfo=UTC), "open": 11.0, "high": 12.5,
         "low": 10.25, "close": 11.5, "volume": 1001, "vwap": None, "trade_count": None},
    ]  # fmt: skip
    assert limiter.calls == 1 and clock.sleeps == []


def test_pagination_follows_next_url_with_bearer_and_jitter() -> None:
    script = Script(
        ok(page([bar(0), bar(1)], cursor_url(2))),
        ok(page([bar(2), bar(3)], cursor_url(4))),
        ok(page([bar(4)])),
    )
    client, limiter, clock = polygon(script)
    stats = RequestStats()
    frame = fetch(client, stats)
    assert frame.height == 5
    assert frame["ts"].is_sorted() and frame["ts"].is_unique().all()
    assert frame["open"].to_list() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert [str(r.url) for r in script.requests[1:]] == [cursor_url(2), cursor_url(4)]
    for req in script.requests:
        assert req.headers["Authorization"] == f"Bearer {KEY}"
        assert KEY not in str(req.url)
        assert "apiKey" not in str(req.url)
    assert stats.requests == 3 == limiter.calls
    assert len(clock.sleeps) == 2  # between pages, not after the last
    assert all(0.25 <= s <= 0.5 for s in clock.sleeps)


def test_page_jitter_is_random_within_bounds() -> None:
    sleeps: list[float] = []
    for seed in range(30):
        script = Script(ok(page([bar(0)], cursor_url(1))), ok(page([bar(1)])))
        client, _, clock = polygon(script, seed=seed)
        fetch(client)
        sleeps += clock.sleeps
    assert all(0.25 <= s <= 0.5 for s in sleeps)
    assert max(sleeps) - min(sleeps) > 0.1


def test_retry_inside_a_page_counts_every_attempt() -> None:
    script = Script(
        ok(page([bar(0)], cursor_url(1))),
        status(429, {"Retry-After": "3"}),
        ok(page([bar(1)])),
    )
    client, limiter, clock = polygon(script)
    stats = RequestStats()
    frame = fetch(client, stats)
    assert frame.height == 2
    assert (stats.requests, stats.retries, stats.rate_limited) == (3, 1, 1)
    assert limiter.calls == 3
    assert str(script.requests[2].url) == cursor_url(1)  # the same page asked again
    assert clock.sleeps[1] == 3.0 and 0.25 <= clock.sleeps[0] <= 0.5


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.test/v2/aggs/ticker/AAPL/range/15/minute/1/2?cursor=x",
        "https://api.polygon.test.evil.test/v2/aggs?cursor=x",
        "https://api.polygon.test@evil.test/v2/aggs?cursor=x",
        "https://api.polygon.test:8443/v2/aggs?cursor=x",
    ],
)
def test_next_url_to_another_host_is_refused(next_url: str) -> None:
    script = Script(ok(page([bar(0)], next_url)), ok(page([bar(1)])))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert "another host" in str(info.value)
    assert len(script.requests) == 1  # the key never went there


def test_next_url_downgrading_to_plain_http_is_refused() -> None:
    script = Script(
        ok(page([bar(0)], cursor_url(1, host=BASE.replace("https://", "http://")))),
        ok(page([bar(1)])),
    )
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError):
        fetch(client)
    assert all(r.url.scheme == "https" for r in script.requests)


@pytest.mark.parametrize(
    "bad",
    [
        bar(0, o=None),
        bar(0, c="10.5"),
        bar(0, v=True),
        {k: v for k, v in bar(0).items() if k != "t"},
        "not a bar",
    ],
    ids=["null-open", "string-close", "bool-volume", "missing-t", "not-a-dict"],
)
def test_bars_with_bad_fields_are_malformed(bad: Any) -> None:
    script = Script(ok(page([bar(1), bad])))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert info.value.requests == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_malformed(literal: str) -> None:
    body = (
        f'{{"status": "OK", "resultsCount": 1, "results": [{{"t": {T0}, "o": 1, "h": {literal},'
        ' "l": 1, "c": 1, "v": 5}]}'
    )
    script = Script(raw(body))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.MALFORMED_RESPONSE


@pytest.mark.parametrize(
    "body",
    [
        {"status": "ERROR", "error": "boom"},
        {"status": "OK", "results": {"t": 1}},
        [1, 2, 3],
    ],
)
def test_payloads_that_are_not_aggregates_are_malformed(body: Any) -> None:
    script = Script(ok(body))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.MALFORMED_RESPONSE


def test_delayed_status_is_accepted() -> None:
    script = Script(ok(page([bar(0)]) | {"status": "DELAYED"}))
    client, _, _ = polygon(script)
    assert fetch(client).height == 1


def test_unknown_ticker_is_an_empty_frame() -> None:
    body = {"ticker": "ZZNOPE", "queryCount": 0, "resultsCount": 0, "adjusted": True,
            "status": "OK", "request_id": "x", "count": 0}  # fmt: skip
    script = Script(ok(body))
    client, limiter, clock = polygon(script)
    frame = fetch(client)
    assert frame.height == 0
    assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert limiter.calls == 1 and clock.sleeps == []


def test_failure_on_a_later_page_reports_every_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(ok(page([bar(0)], cursor_url(1))), status(503))
    client, limiter, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.PROVIDER_UNAVAILABLE
    assert info.value.requests == 6 == limiter.calls  # 1 page + 5 attempts at the second
    assert KEY not in str(info.value)
    assert caplog.records
    for record in caplog.records:
        assert KEY not in record.getMessage()


def test_auth_failure_is_reported_once_without_the_key() -> None:
    script = Script(status(401, body={"status": "ERROR", "error": "Unknown API Key"}))
    client, limiter, clock = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.AUTH_FAILED
    assert limiter.calls == 1 and clock.sleeps == []
    assert KEY not in str(info.value)


def test_transport_error_with_key_in_message_is_not_leaked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(httpx.ConnectError(f"refused: Bearer {KEY}"))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.PROVIDER_UNAVAILABLE
    assert KEY not in str(info.value)
    assert all(KEY not in r.getMessage() for r in caplog.records)

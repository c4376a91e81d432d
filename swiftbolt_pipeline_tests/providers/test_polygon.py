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

from swiftbolt_pipeline.core import errors
from swiftbolt_pipeline.core.models import BAR_SCHEMA
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
    "host",
    [
        "https://api.massive.com",  # Polygon's own host since its rebrand
        "https://evil.test",
        "https://api.polygon.test@evil.test",
        "https://api.polygon.test:8443",
        "http://api.polygon.test",  # a downgrade to plain http
        "",  # a bare path
    ],
)
def test_next_url_is_followed_on_the_configured_host(host: str) -> None:
    """The cursor's path and query are followed on the configured base URL: the key never goes
    to another host or over plain http, and pagination does not fail for a host it names."""
    script = Script(ok(page([bar(0)], cursor_url(1, host=host))), ok(page([bar(1)])))
    client, _, _ = polygon(script)
    frame = fetch(client)
    assert frame.height == 2
    assert [str(r.url) for r in script.requests[1:]] == [cursor_url(1)]
    assert script.requests[1].headers["Authorization"] == f"Bearer {KEY}"


def test_next_url_keeps_the_base_path_and_drops_a_key() -> None:
    script = Script(
        ok(page([bar(0)], cursor_url(1, host="https://api.massive.com") + "&apiKey=leaked")),
        ok(page([bar(1)])),
    )
    clock, limiter = fake_clock(), CountingLimiter()
    client = PolygonClient(BASE + "/proxy/", KEY, limiter, clock, transport=script.transport)
    assert fetch(client).height == 2
    expected = cursor_url(1).replace(BASE, BASE + "/proxy")
    assert [str(r.url) for r in script.requests] == [
        f"{BASE}/proxy/v2/aggs/ticker/AAPL/range/15/minute/2024-03-04/2024-03-08"
        "?adjusted=true&sort=asc&limit=50000",
        expected,
    ]


@pytest.mark.parametrize(
    "next_url",
    [
        f"{BASE}/v2/aggs/ticker/MSFT/range/15/minute/1/2024-03-08?cursor=x",
        f"{BASE}/v2/aggs/ticker/AAPL/range/1/minute/1/2024-03-08?cursor=x",
        f"{BASE}/v3/reference/tickers?cursor=x",
        "https://api.polygon.test.evil.test/v2/aggs?cursor=x",
    ],
    ids=["other-ticker", "other-bar-size", "other-endpoint", "other-path"],
)
def test_next_url_of_another_request_is_malformed(next_url: str) -> None:
    script = Script(ok(page([bar(0)], next_url)), ok(page([bar(1)])))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert len(script.requests) == 1


def test_a_repeated_cursor_is_malformed_not_an_endless_loop() -> None:
    script = Script(
        ok(page([bar(0)], cursor_url(1))),
        ok(page([bar(1)], cursor_url(2))),
        ok(page([bar(2)], cursor_url(1, host="https://api.massive.com"))),  # back to page 2
        ok(page([bar(3)])),
    )
    client, _, _ = polygon(script)
    stats = RequestStats()
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, stats)
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert "repeats" in str(info.value)
    assert len(script.requests) == stats.requests == 3


def test_pages_are_capped_for_a_cursor_that_never_repeats() -> None:
    """One day has at most 96 fifteen-minute bars: a server still paging after 96 pages of
    one bar each (plus a final empty page) is going round in circles."""
    script = Script(lambda request: ok(page([bar(0)], cursor_url(len(script.requests)))))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        client.fetch_m15("AAPL", FIRST, FIRST, RequestStats())
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert "more than 97 pages" in str(info.value)
    assert len(script.requests) == 97


def test_a_payload_for_another_ticker_is_malformed() -> None:
    script = Script(ok(page([bar(0)]) | {"ticker": "MSFT"}))
    client, _, _ = polygon(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client)
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert "MSFT" in str(info.value)


def test_pages_arrive_one_by_one_and_stop_at_another_ticker() -> None:
    script = Script(
        ok(page([bar(0), bar(1)], cursor_url(2))),
        ok(page([bar(2)]) | {"ticker": "AAPLX"}),
    )
    client, _, _ = polygon(script)
    pages = client.iter_m15_pages("AAPL", FIRST, LAST, RequestStats())
    first = next(pages)
    assert first["open"].to_list() == [10.0, 11.0]
    assert len(script.requests) == 1  # the next page is asked for only when wanted
    with pytest.raises(errors.ProviderError) as info:
        next(pages)
    assert info.value.code == errors.MALFORMED_RESPONSE
    client.close()


def test_after_resumes_at_the_next_slot_and_never_serves_a_stored_bar_again() -> None:
    stored = datetime(2024, 3, 6, 20, 45, tzinfo=UTC)  # 15:45 ET, the last regular bar
    at = int(stored.timestamp() * 1000)
    # A server bucketing from a mid-slot `from` would label a partial bar with the stored start.
    script = Script(ok(page([bar(0, t=at, o=1.0), bar(0, t=at + STEP)])))
    client, _, _ = polygon(script)
    pages = list(client.iter_m15_pages("AAPL", FIRST, LAST, RequestStats(), after=stored))
    assert [p["ts"].to_list() for p in pages] == [[datetime(2024, 3, 6, 21, 0, tzinfo=UTC)]]
    (req,) = script.requests
    assert req.url.path == f"/v2/aggs/ticker/AAPL/range/15/minute/{at + 900_000}/2024-03-08"


def test_after_outside_the_range() -> None:
    script = Script(ok(page([bar(0)])))
    client, _, _ = polygon(script)
    before = datetime(2024, 3, 1, 21, 0, tzinfo=UTC)  # the previous Friday
    assert sum(p.height for p in client.iter_m15_pages(
        "AAPL", FIRST, LAST, RequestStats(), after=before)) == 1  # fmt: skip
    assert script.requests[0].url.path.endswith("/2024-03-04/2024-03-08")
    # 23:59:59.999 ET on the last day: nothing can start after it inside the range.
    end = datetime(2024, 3, 9, 4, 59, 59, 999000, tzinfo=UTC)
    assert list(client.iter_m15_pages("AAPL", FIRST, LAST, RequestStats(), after=end)) == []
    assert len(script.requests) == 1
    with pytest.raises(ValueError, match="timezone"):
        next(client.iter_m15_pages("AAPL", FIRST, LAST, RequestStats(), after=datetime(2024, 3, 5)))


def test_recorded_payload_shape_replays() -> None:
    """The shapes Polygon's documented example and its client library's recorded mocks show:
    `next_url` on api.massive.com with an ms `from` and a date `to`, `v` as a float, `vw`/`n`
    missing, `status` DELAYED. Sent as JSON text in that key order, through the client."""
    t1 = T0 + STEP
    first = (
        '{"adjusted": true, "next_url": "https://api.massive.com/v2/aggs/ticker/AAPL/range/15/'
        f'minute/{t1}/2024-03-08?cursor=Y3Vyc29yLTE", "queryCount": 15, "request_id": "r1", '
        f'"results": [{{"c": 172.5, "h": 173.0, "l": 171.25, "n": 812, "o": 171.75, "t": {T0}, '
        '"v": 1204577, "vw": 172.1}], "resultsCount": 1, "status": "OK", "ticker": "AAPL"}'
    )
    second = (
        '{"ticker": "AAPL", "queryCount": 15, "resultsCount": 1, "adjusted": true, '
        '"results": [{"v": 988123.0, "o": 172.5, "c": 172.0, "h": 172.75, "l": 171.5, '
        f'"t": {t1}}}], "status": "DELAYED", "request_id": "r2", "count": 1}}'
    )
    script = Script(raw(first), raw(second))
    client, _, _ = polygon(script)
    frame = fetch(client)
    assert str(script.requests[1].url) == (
        f"{BASE}/v2/aggs/ticker/AAPL/range/15/minute/{t1}/2024-03-08?cursor=Y3Vyc29yLTE"
    )
    assert frame.to_dicts() == [
        {"ts": datetime(2024, 3, 4, 14, 30, tzinfo=UTC), "open": 171.75, "high": 173.0,
         "low": 171.25, "close": 172.5, "volume": 1204577, "vwap": 172.1, "trade_count": 812},
        {"ts": datetime(2024, 3, 4, 14, 45, tzinfo=UTC), "open": 172.5, "high": 172.75,
         "low": 171.5, "close": 172.0, "volume": 988123, "vwap": None, "trade_count": None},
    ]  # fmt: skip


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
    frame = client.fetch_m15("ZZNOPE", FIRST, LAST, RequestStats())
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

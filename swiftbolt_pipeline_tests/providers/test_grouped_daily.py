"""Polygon's grouped daily (every ticker's daily bar of one day) over httpx.MockTransport, with
payloads shaped as Polygon records them: `T v vw o c h l t n` per ticker, `t` = 16:00 ET of
the day, `queryCount`/`resultsCount`/`adjusted`/`status`; a day without trading answers
`resultsCount` 0 and no `results`."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest

from swiftbolt_pipeline.core.errors import MALFORMED_RESPONSE, ProviderError
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.providers.registry import as_grouped_daily, serves_grouped_daily
from swiftbolt_pipeline_tests.providers.helpers import (
    BASE,
    KEY,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
    status,
)

# 2024-03-08 (EST) and 2024-03-11 (EDT): 16:00 New York is 21:00 and 20:00 UTC.
FRI_CLOSE = int(datetime(2024, 3, 8, 21, 0, tzinfo=UTC).timestamp() * 1000)
MON_CLOSE = int(datetime(2024, 3, 11, 20, 0, tzinfo=UTC).timestamp() * 1000)


def _bar(ticker: str, t: int, close: float, **extra: Any) -> dict[str, Any]:
    bar = {"T": ticker, "v": 895345, "vw": 9.9979, "o": 9.99, "c": close, "h": 10.5,
           "l": 9.9, "t": t, "n": 96}  # fmt: skip
    return bar | extra


def _payload(*bars: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "queryCount": len(bars), "resultsCount": len(bars), "adjusted": True,
        "status": "OK", "request_id": "eae3ded2d6d43f978125b7a8a609fad9",
    }  # fmt: skip
    if bars:
        body |= {"results": list(bars), "count": len(bars)}
    return body


def _client(script: Script, limiter: CountingLimiter | None = None) -> PolygonClient:
    return PolygonClient(
        BASE, KEY, limiter or CountingLimiter(), fake_clock(), transport=script.transport,
        rng=random.Random(1), backoff_base_s=0.0,
    )  # fmt: skip


def test_one_request_answers_every_ticker_at_the_session_open() -> None:
    script = Script(ok(_payload(_bar("GIK", MON_CLOSE, 10.02), _bar("aapl", MON_CLOSE, 171.5),
                                _bar("OTCX", MON_CLOSE, 1.2, vw=None, n=None))))  # fmt: skip
    limiter = CountingLimiter()
    stats = RequestStats()
    frame = _client(script, limiter).grouped_daily(date(2024, 3, 11), stats)
    (request,) = script.requests
    assert request.url.path == "/v2/aggs/grouped/locale/us/market/stocks/2024-03-11"
    assert parse_qs(request.url.query.decode()) == {"adjusted": ["true"]}
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in str(request.url)
    assert stats.requests == 1 and limiter.calls == 1  # the shared token bucket, once
    assert frame["symbol"].to_list() == ["GIK", "AAPL", "OTCX"]
    # 09:30 ET after DST began = 13:30 UTC: the session's open, not Polygon's 16:00 label.
    assert set(frame["ts"].to_list()) == {datetime(2024, 3, 11, 13, 30, tzinfo=UTC)}
    gik = frame.row(0, named=True)
    assert (gik["open"], gik["high"], gik["low"], gik["close"]) == (9.99, 10.5, 9.9, 10.02)
    assert (gik["volume"], gik["vwap"], gik["trade_count"]) == (895345, 9.9979, 96)
    otc = frame.row(2, named=True)
    assert otc["vwap"] is None and otc["trade_count"] is None


def test_a_holiday_answers_no_results_and_an_empty_frame() -> None:
    script = Script(ok(_payload()))
    frame = _client(script).grouped_daily(date(2024, 3, 29), RequestStats())  # Good Friday
    assert frame.is_empty()
    assert frame.columns == ["symbol", "ts", "open", "high", "low", "close", "volume", "vwap",
                             "trade_count"]  # fmt: skip


def test_bars_of_another_day_or_a_ticker_twice_are_malformed() -> None:
    for payload in (
        _payload(_bar("AAPL", FRI_CLOSE, 170.0)),  # Friday's bar in Monday's answer
        _payload(_bar("AAPL", MON_CLOSE, 170.0), _bar("AAPL", MON_CLOSE, 171.0)),
        _payload(_bar("", MON_CLOSE, 170.0)),
        _payload(_bar("AAPL", MON_CLOSE, "170")),
        {"status": "ERROR", "request_id": "x"},
    ):
        with pytest.raises(ProviderError) as caught:
            _client(Script(ok(payload))).grouped_daily(date(2024, 3, 11), RequestStats())
        assert caught.value.code == MALFORMED_RESPONSE


def test_a_server_error_is_retried_through_the_shared_request_loop() -> None:
    script = Script(status(503), ok(_payload(_bar("AAPL", MON_CLOSE, 171.5))))
    limiter = CountingLimiter()
    stats = RequestStats()
    frame = _client(script, limiter).grouped_daily(date(2024, 3, 11), stats)
    assert frame.height == 1
    assert (stats.requests, stats.retries, limiter.calls) == (2, 1, 2)


def test_only_polygon_serves_grouped_daily() -> None:
    assert serves_grouped_daily(Provider.POLYGON)
    assert not serves_grouped_daily(Provider.ALPACA)
    client = _client(Script(ok(_payload())))
    assert as_grouped_daily(client) is client

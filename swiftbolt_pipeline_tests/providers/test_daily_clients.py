"""The daily endpoints of PolygonClient and AlpacaClient over httpx.MockTransport: request
shape, one request for years of days, `ts` moved from the providers' midnight label to the
session's open."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

from swiftbolt_pipeline.providers.alpaca import AlpacaClient
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline_tests.providers.helpers import (
    BASE,
    KEY,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
)

# Polygon's labels: 00:00 America/New_York in ms (EST = 05:00 UTC, EDT = 04:00 UTC).
FRI_EST = int(datetime(2024, 3, 8, 5, 0, tzinfo=UTC).timestamp() * 1000)
MON_EDT = int(datetime(2024, 3, 11, 4, 0, tzinfo=UTC).timestamp() * 1000)  # after DST began
SAT = int(datetime(2024, 3, 9, 5, 0, tzinfo=UTC).timestamp() * 1000)  # no session


def _bar(t: Any, close: float) -> dict[str, Any]:
    return {"t": t, "o": 10.0, "h": 12.0, "l": 9.0, "c": close, "v": 1000, "vw": 10.5, "n": 9}


def test_polygon_daily_is_one_request_and_stored_at_the_session_open() -> None:
    script = Script(
        ok({"ticker": "AAPL", "status": "OK", "results": [_bar(FRI_EST, 11.0),
            _bar(SAT, 99.0), _bar(MON_EDT, 11.5)]})
    )  # fmt: skip
    client = PolygonClient(
        BASE, KEY, CountingLimiter(), _clock(), transport=script.transport, rng=random.Random(1)
    )
    stats = RequestStats()
    bars = client.daily_bars(["AAPL"], date(2019, 3, 11), date(2024, 3, 11), stats)["AAPL"]
    (request,) = script.requests
    assert request.url.path == "/v2/aggs/ticker/AAPL/range/1/day/2019-03-11/2024-03-11"
    assert parse_qs(request.url.query.decode()) == {
        "adjusted": ["true"], "sort": ["asc"], "limit": ["50000"],
    }  # fmt: skip
    assert stats.requests == 1
    # 09:30 ET: 14:30 UTC in winter, 13:30 UTC once DST began; the Saturday bar is dropped.
    assert bars["ts"].to_list() == [
        datetime(2024, 3, 8, 14, 30, tzinfo=UTC),
        datetime(2024, 3, 11, 13, 30, tzinfo=UTC),
    ]
    assert bars["close"].to_list() == [11.0, 11.5]


def test_alpaca_daily_asks_1day_for_all_symbols_at_once() -> None:
    script = Script(
        ok({"bars": {"AAPL": [_bar("2024-03-08T05:00:00Z", 11.0)],
                     "MSFT": [_bar("2024-03-11T04:00:00Z", 21.0)]},
            "next_page_token": None})
    )  # fmt: skip
    client = AlpacaClient(
        BASE, "id", "secret", CountingLimiter(), _clock(), transport=script.transport,
        rng=random.Random(1),
    )  # fmt: skip
    got = client.daily_bars(["AAPL", "MSFT", "NVDA"], date(2024, 3, 8), date(2024, 3, 11),
                            RequestStats())  # fmt: skip
    (request,) = script.requests
    query = parse_qs(request.url.query.decode())
    assert query["timeframe"] == ["1Day"] and query["symbols"] == ["AAPL,MSFT,NVDA"]
    assert got["AAPL"]["ts"].to_list() == [datetime(2024, 3, 8, 14, 30, tzinfo=UTC)]
    assert got["MSFT"]["ts"].to_list() == [datetime(2024, 3, 11, 13, 30, tzinfo=UTC)]
    assert got["NVDA"].is_empty()


def _clock() -> Any:
    return fake_clock()

"""The emulator's 5-minute bars on all three APIs (Polygon `range/5/minute`, Alpaca `5Min`,
Tradier `5min`), checked against the shipped real 5-minute bars read independently."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx

from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY, aggs
from swiftbolt_pipeline_tests.realdata import regular_m5

ALPACA = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": KEY}
DAY = date(2025, 6, 2)


def _expected() -> list[tuple[int, float, float, float, float, int]]:
    truth = regular_m5("SPY", DAY, DAY)
    return [
        (int(ts.timestamp() * 1000), o, h, low, c, v) for ts, o, h, low, c, v in truth.iter_rows()
    ]


def test_polygon_five_minute_aggregates_are_the_real_bars(emu: str) -> None:
    body = aggs(emu, "SPY", "2025-06-02", "2025-06-02", mult=5, limit=50000).json()
    assert "next_url" not in body
    regular = {t for t, *_ in _expected()}
    served = [
        (b["t"], b["o"], b["h"], b["l"], b["c"], b["v"])
        for b in body["results"]
        if b["t"] in regular
    ]
    assert served == _expected() and len(served) == 78
    # The page counts base minutes: a real 5-minute base bar counts 5.
    assert body["queryCount"] == 5 * body["resultsCount"]


def test_polygon_limit_counts_the_same_base_minutes_for_m5_and_m15(emu: str) -> None:
    # Two months of a generated symbol (1-minute base bars): one page each, same base minutes.
    m5 = aggs(emu, "GENT", "2024-05-01", "2024-06-28", mult=5, limit=50000).json()
    m15 = aggs(emu, "GENT", "2024-05-01", "2024-06-28", mult=15, limit=50000).json()
    assert "next_url" not in m5 and "next_url" not in m15
    assert m5["queryCount"] == m15["queryCount"] > 10_000
    assert m5["resultsCount"] > 2 * m15["resultsCount"]


def test_alpaca_5min_equals_polygon_5_minute(emu: str) -> None:
    r = httpx.get(
        f"{emu}/v2/stocks/bars",
        params={"symbols": "SPY", "timeframe": "5Min", "start": "2025-06-02T04:00:00Z",
                "end": "2025-06-03T03:59:59Z", "adjustment": "all", "limit": 10000},
        headers=ALPACA, timeout=30,
    )  # fmt: skip
    assert r.status_code == 200, r.text
    alpaca = r.json()["bars"]["SPY"]
    polygon = aggs(emu, "SPY", "2025-06-02", "2025-06-02", mult=5, limit=50000).json()["results"]
    assert [
        (int(datetime.fromisoformat(a["t"]).timestamp() * 1000), a["o"], a["h"], a["l"], a["c"])
        for a in alpaca
    ] == [(p["t"], p["o"], p["h"], p["l"], p["c"]) for p in polygon]


def test_tradier_5min_is_the_real_regular_session(emu: str) -> None:
    r = httpx.get(
        f"{emu}/v1/markets/timesales",
        params={"symbol": "SPY", "interval": "5min", "start": "2025-06-02 09:30",
                "end": "2025-06-02 15:55", "session_filter": "open"},
        headers={"Authorization": f"Bearer {KEY}"},
    )  # fmt: skip
    data = r.json()["series"]["data"]
    served = [
        (d["timestamp"] * 1000, d["open"], d["high"], d["low"], d["close"], d["volume"])
        for d in data
    ]
    assert served == _expected()
    assert datetime.fromtimestamp(data[-1]["timestamp"], UTC).strftime("%H:%M") == "19:55"

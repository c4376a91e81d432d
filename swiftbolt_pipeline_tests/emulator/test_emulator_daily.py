"""The emulator's official daily bars: Polygon `/range/1/day/` and Alpaca `1Day`. Expected
values are computed here from the shipped 5-minute file (all of a day's bars, extended hours
included), independently of the emulator's aggregation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import polars as pl

from swiftbolt_pipeline.emulator.data import REAL_BARS
from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY

NY = ZoneInfo("America/New_York")
ALPACA_HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": KEY}


def _daily_from_file(ticker: str, first: date, last: date) -> list[dict[str, Any]]:
    frame = (
        pl.read_csv(REAL_BARS.read_bytes(), columns=["ticker", "t", "o", "h", "l", "c", "v"])
        .filter(pl.col("ticker") == ticker)
        .with_columns(
            day=pl.from_epoch("t", time_unit="ms")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone("America/New_York")
            .dt.date()
        )
        .filter(pl.col("day").is_between(first, last))
        .sort("t")
        .group_by("day", maintain_order=True)
        .agg(
            o=pl.col("o").first(),
            h=pl.col("h").max(),
            l=pl.col("l").min(),
            c=pl.col("c").last(),
            v=pl.col("v").sum(),
        )
    )
    out = []
    for row in frame.iter_rows(named=True):
        day = row.pop("day")
        midnight = datetime(day.year, day.month, day.day, tzinfo=NY)
        out.append({"t": int(midnight.timestamp() * 1000), **row})
    return out


def _polygon(emu: str, ticker: str, frm: str, to: str, **params: Any) -> dict[str, Any]:
    params.setdefault("apiKey", KEY)
    url = f"{emu}/v2/aggs/ticker/{ticker}/range/1/day/{frm}/{to}"
    response = httpx.get(url, params=params, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_polygon_daily_bars_are_the_whole_days_aggregates_labelled_midnight_new_york(
    emu: str,
) -> None:
    expected = _daily_from_file("SPY", date(2025, 10, 27), date(2025, 11, 7))  # across DST
    body = _polygon(emu, "SPY", "2025-10-25", "2025-11-08")
    got = [{k: b[k] for k in ("t", "o", "h", "l", "c", "v")} for b in body["results"]]
    assert got == expected
    assert len(got) == 10  # sessions only: no bar on the weekends
    # 2025-10-27 00:00 EDT = 04:00 UTC; 2025-11-03 00:00 EST = 05:00 UTC.
    assert datetime.fromtimestamp(got[0]["t"] / 1000, UTC).hour == 4
    assert datetime.fromtimestamp(got[5]["t"] / 1000, UTC).hour == 5


def test_polygon_daily_limit_counts_days_and_five_years_fit_one_page(emu: str) -> None:
    body = _polygon(emu, "SPY", "2020-11-20", "2025-11-19", limit="50000")
    assert "next_url" not in body
    assert body["resultsCount"] == body["queryCount"] > 1250
    first = _polygon(emu, "SPY", "2025-06-02", "2025-06-13", limit="3")
    assert first["resultsCount"] == 3 and "/range/1/day/" in first["next_url"]
    pages, page = [first], first
    while "next_url" in page:
        page = httpx.get(page["next_url"], params={"apiKey": KEY}).json()
        pages.append(page)
    whole = _polygon(emu, "SPY", "2025-06-02", "2025-06-13")["results"]
    assert [b for p in pages for b in p["results"]] == whole and len(whole) == 10


def test_alpaca_1day_bars_match_polygon_with_rfc3339_midnight_new_york(emu: str) -> None:
    response = httpx.get(
        f"{emu}/v2/stocks/bars",
        params={"symbols": "SPY,QQQ", "timeframe": "1Day", "start": "2025-10-27T04:00:00Z",
                "end": "2025-11-07T23:00:00Z", "limit": "10000", "adjustment": "all"},
        headers=ALPACA_HEADERS,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    bars = response.json()["bars"]
    for ticker in ("SPY", "QQQ"):
        polygon = _polygon(emu, ticker, "2025-10-27", "2025-11-07")["results"]
        assert [b["t"] for b in bars[ticker]] == [
            datetime.fromtimestamp(b["t"] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for b in polygon
        ]
        assert bars[ticker][0]["t"] == "2025-10-27T04:00:00Z"
        assert [{k: b[k] for k in "ohlcv"} for b in bars[ticker]] == [
            {k: b[k] for k in "ohlcv"} for b in polygon
        ]

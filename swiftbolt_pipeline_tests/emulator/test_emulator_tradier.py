from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY

NY = ZoneInfo("America/New_York")


def ts(base: str, token: str | None = KEY, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{base}/v1/markets/timesales", params=params, headers=headers)


def test_timesales_format_matches_polygon(emu: str) -> None:
    r = ts(emu, symbol="SPY", interval="15min", start="2025-06-02 09:30", end="2025-06-02 15:45",
           session_filter="open")  # fmt: skip
    data = r.json()["series"]["data"]
    assert isinstance(data, list) and len(data) == 26
    assert data[0]["time"] == "2025-06-02T09:30:00" and data[-1]["time"] == "2025-06-02T15:45:00"
    assert data[0]["timestamp"] == int(datetime(2025, 6, 2, 9, 30, tzinfo=NY).timestamp())
    assert set(data[0]) == {"time", "timestamp", "price", "open", "high", "low", "close",
                            "volume", "vwap"}  # fmt: skip
    poly = httpx.get(
        f"{emu}/v2/aggs/ticker/SPY/range/15/minute/2025-06-02/2025-06-02", params={"apiKey": KEY}
    ).json()["results"]
    by_t = {b["t"] // 1000: b for b in poly}
    for d in data:
        p = by_t[d["timestamp"]]
        assert (d["open"], d["high"], d["low"], d["close"], d["volume"], d["vwap"]) == (
            p["o"], p["h"], p["l"], p["c"], p["v"], p["vw"])  # fmt: skip
        assert d["low"] <= d["price"] <= d["high"]


def test_session_filter_and_intervals(emu: str) -> None:
    common = {"symbol": "GENT", "start": "2025-06-02 04:00", "end": "2025-06-02 19:59"}
    all_ = ts(emu, interval="1min", **common).json()["series"]["data"]
    open_ = ts(emu, interval="1min", session_filter="open", **common).json()["series"]["data"]
    assert len(all_) > len(open_) >= 380
    assert all("09:30:00" <= d["time"][11:] < "16:00:00" for d in open_)
    assert any(d["time"][11:] < "09:30:00" for d in all_)
    five = ts(emu, interval="5min", session_filter="open", **common).json()["series"]["data"]
    assert len(five) == 78
    assert sum(d["volume"] for d in five) == sum(d["volume"] for d in open_)
    assert ts(emu, interval="tick", **common).status_code == 400


def test_single_object_and_null_quirks(emu: str) -> None:
    one = ts(emu, symbol="SPY", interval="15min", start="2025-06-02 09:30", end="2025-06-02 09:30")
    data = one.json()["series"]["data"]
    assert isinstance(data, dict) and data["time"] == "2025-06-02T09:30:00"
    weekend = ts(emu, symbol="SPY", interval="15min", start="2025-06-07 09:30",
                 end="2025-06-07 16:00")  # fmt: skip
    assert weekend.status_code == 200 and weekend.json() == {"series": "null"}
    unknown = ts(emu, symbol="ZZFAKE", start="2025-06-02 09:30", end="2025-06-02 16:00")
    assert unknown.json() == {"series": "null"}


def test_auth_required(emu: str) -> None:
    params = {"symbol": "SPY", "start": "2025-06-02 09:30", "end": "2025-06-02 10:00"}
    assert ts(emu, token=None, **params).status_code == 401
    assert ts(emu, token="bad", **params).status_code == 401
    assert ts(emu, **params).status_code == 200


@pytest.mark.parametrize("symbol", ["SPY", "GENT"])
def test_in_progress_bar_included_nothing_after_now(
    emu: str, monkeypatch: pytest.MonkeyPatch, symbol: str
) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", "2025-06-02T10:07:30-04:00")
    now_s = int(datetime(2025, 6, 2, 10, 7, 30, tzinfo=NY).timestamp())
    data = ts(emu, symbol=symbol, interval="15min", start="2025-06-02 09:30",
              end="2025-06-02 16:00").json()["series"]["data"]  # fmt: skip
    assert data[-1]["time"] == "2025-06-02T10:00:00"  # in-progress bucket included
    one = ts(emu, symbol=symbol, interval="1min", start="2025-06-02 09:30").json()
    assert all(d["timestamp"] <= now_s for d in one["series"]["data"])
    assert one["series"]["data"][-1]["timestamp"] >= now_s - 600

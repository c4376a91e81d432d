"""The emulator's crypto pairs: bars every UTC day (weekends, US holidays), the same 15-minute
bars from Polygon (`X:BTCUSD`) and Alpaca (`BTC/USD`), deterministic, `ZZ` pairs unlisted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY

POLYGON = {"Authorization": f"Bearer {EMULATOR_KEY}"}
ALPACA = {"APCA-API-KEY-ID": EMULATOR_KEY, "APCA-API-SECRET-KEY": EMULATOR_KEY}


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def _polygon(emulator: str, ticker: str, minutes: int, start: int, end: int) -> dict[str, Any]:
    url = f"{emulator}/v2/aggs/ticker/{ticker}/range/{minutes}/minute/{start}/{end}"
    return httpx.get(url, params={"limit": "50000"}, headers=POLYGON).raise_for_status().json()


def test_every_utc_day_trades_most_minutes(emulator: str) -> None:
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    # Christmas Day and the following Saturday: no NYSE session, bars all the same.
    for day in (25, 27):
        start, end = _ms(2025, 12, day), _ms(2025, 12, day + 1) - 1
        bars = _polygon(emulator, "X:BTCUSD", 1, start, end)["results"]
        assert 0.95 * 1440 <= len(bars) < 1440
        assert bars[0]["t"] >= start and bars[-1]["t"] <= end - 59_999
        hours = {datetime.fromtimestamp(b["t"] / 1000, UTC).hour for b in bars}
        assert hours == set(range(24))
        again = _polygon(emulator, "X:BTCUSD", 1, start, end)["results"]
        assert again == bars  # deterministic


def test_alpaca_serves_the_polygon_bars_under_the_slash_name(emulator: str) -> None:
    start, end = _ms(2026, 1, 1), _ms(2026, 1, 2) - 1
    polygon = _polygon(emulator, "X:ETHUSD", 15, start, end)["results"]
    params = {
        "symbols": "ETH/USD",
        "timeframe": "15Min",
        "limit": "10000",
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T23:59:59Z",
    }
    url = f"{emulator}/v1beta3/crypto/us/bars"
    payload = httpx.get(url, params=params, headers=ALPACA).raise_for_status().json()
    assert list(payload["bars"]) == ["ETH/USD"] and payload["next_page_token"] is None
    alpaca = payload["bars"]["ETH/USD"]
    assert len(alpaca) == len(polygon) == 96
    for a, p in zip(alpaca, polygon, strict=True):
        assert datetime.fromisoformat(a["t"]).timestamp() * 1000 == p["t"]
        assert (a["o"], a["h"], a["l"], a["c"], a["v"], a["n"]) == (
            p["o"], p["h"], p["l"], p["c"], p["v"], p["n"]
        )  # fmt: skip


def test_zz_pairs_are_unlisted(emulator: str) -> None:
    body = _polygon(emulator, "X:ZZNOPEUSD", 15, _ms(2026, 1, 1), _ms(2026, 1, 2) - 1)
    assert body["resultsCount"] == 0 and "results" not in body

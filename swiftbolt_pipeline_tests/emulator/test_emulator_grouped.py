"""The emulator's Polygon grouped daily: the same official daily bars as its `/range/1/day/`
for every ticker it knows that day (checked for the shipped real symbols against the range
endpoint and against the shipped file directly), Polygon's empty answer on days without
trading, and the request counted like every Polygon request."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import httpx

from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY
from swiftbolt_pipeline_tests.emulator.test_emulator_daily import NY, _daily_from_file, _polygon

REAL = ["AAPL", "MSFT", "NVDA", "QQQ", "SPY"]
FIRST, LAST = date(2026, 1, 5), date(2026, 1, 30)  # 19 sessions, MLK day (01-19) closed


def _grouped(emu: str, day: str, **params: Any) -> httpx.Response:
    params.setdefault("apiKey", KEY)
    url = f"{emu}/v2/aggs/grouped/locale/us/market/stocks/{day}"
    return httpx.get(url, params=params, timeout=60)


def _by_ticker(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {bar["T"]: bar for bar in body.get("results", [])}


def _requests(emu: str) -> int:
    return int(httpx.get(f"{emu}/_emulator/stats").json()["requests"]["polygon"])


def test_grouped_bars_are_the_range_endpoints_official_daily_bars(emu: str) -> None:
    ranged = {t: _polygon(emu, t, FIRST.isoformat(), LAST.isoformat())["results"] for t in REAL}
    before = _requests(emu)
    served_days = 0
    day = FIRST
    while day <= LAST:
        body = _grouped(emu, day.isoformat()).json()
        bars = _by_ticker(body)
        midnight = int(datetime(day.year, day.month, day.day, tzinfo=NY).timestamp() * 1000)
        expected = {t: [b for b in ranged[t] if b["t"] == midnight] for t in REAL}
        if not any(expected.values()):  # weekend or holiday: Polygon's empty answer
            assert body["resultsCount"] == body["queryCount"] == 0 and "results" not in body
        else:
            served_days += 1
            assert sorted(bars) == REAL  # nothing else asked since the reset
            assert body["resultsCount"] == body["queryCount"] == len(REAL)
            assert body["status"] == "OK" and body["adjusted"] is True
            close_label = int(
                datetime(day.year, day.month, day.day, 16, tzinfo=NY).timestamp() * 1000
            )
            for ticker in REAL:
                (official,) = expected[ticker]
                got = dict(bars[ticker])
                assert got.pop("T") == ticker and got.pop("t") == close_label
                assert got == {k: v for k, v in official.items() if k != "t"}
        day += timedelta(days=1)
    assert served_days == 19
    assert _requests(emu) - before == (LAST - FIRST).days + 1  # one request per day asked
    # And independently, from the shipped file: open, high, low, close, volume of one day.
    (filed,) = _daily_from_file("NVDA", date(2026, 1, 6), date(2026, 1, 6))
    nvda = _by_ticker(_grouped(emu, "2026-01-06").json())["NVDA"]
    assert {k: nvda[k] for k in "ohlcv"} == {k: filed[k] for k in "ohlcv"}


def test_the_tickers_it_knows_are_the_real_ones_those_asked_for_and_registered(
    emu: str,
) -> None:
    _polygon(emu, "ACME", "2026-01-06", "2026-01-06")
    httpx.get(f"{emu}/v2/stocks/bars", params={"symbols": "BETA,ZZNOPE", "timeframe": "1Day"},
              headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": KEY})  # fmt: skip
    registered = httpx.post(f"{emu}/_emulator/tickers", json={"tickers": ["gamma", "X:BTCUSD"]})
    assert registered.status_code == 200
    known = ["AAPL", "ACME", "BETA", "GAMMA", "MSFT", "NVDA", "QQQ", "SPY"]
    assert registered.json()["tickers"] == known  # no unlisted ZZ ticker, no crypto pair
    bars = _by_ticker(_grouped(emu, "2026-01-06").json())
    assert sorted(bars) == known
    acme = _polygon(emu, "ACME", "2026-01-06", "2026-01-06")["results"][0]
    assert {k: bars["ACME"][k] for k in "ohlcv"} == {k: acme[k] for k in "ohlcv"}
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    assert sorted(_by_ticker(_grouped(emu, "2026-01-06").json())) == REAL
    bad = httpx.post(f"{emu}/_emulator/tickers", json={"tickers": "AAPL"})
    assert bad.status_code == 400


def test_splits_lifecycles_and_the_clock_apply_as_on_the_range_endpoint(
    emu: str, monkeypatch: Any
) -> None:
    split = {"ticker": "SPY", "execution_date": "2026-01-07", "split_from": 1, "split_to": 4}
    httpx.post(f"{emu}/_emulator/splits", json=split).raise_for_status()
    adjusted = _by_ticker(_grouped(emu, "2026-01-06").json())["SPY"]
    raw_body = _grouped(emu, "2026-01-06", adjusted="false").json()
    assert raw_body["adjusted"] is False
    raw = _by_ticker(raw_body)["SPY"]
    for bar, flag in ((adjusted, "true"), (raw, "false")):
        (ranged,) = _polygon(emu, "SPY", "2026-01-06", "2026-01-06", adjusted=flag)["results"]
        assert {k: bar[k] for k in ("o", "h", "l", "c", "v", "vw", "n")} == {
            k: ranged[k] for k in ("o", "h", "l", "c", "v", "vw", "n")
        }
    assert adjusted["c"] < raw["c"] / 3  # divided by 4 (rounded)

    life = {"ticker": "QQQ", "halted": ["2026-01-06"]}
    httpx.post(f"{emu}/_emulator/lifecycles", json=life).raise_for_status()
    assert "QQQ" not in _by_ticker(_grouped(emu, "2026-01-06").json())
    assert "QQQ" in _by_ticker(_grouped(emu, "2026-01-07").json())

    # A day not begun yet answers nothing; one under way only its bars so far, as /range/.
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-01-08T11:00:00-05:00")
    assert "results" not in _grouped(emu, "2026-01-09").json()
    partial = _by_ticker(_grouped(emu, "2026-01-08").json())["AAPL"]
    (ranged,) = _polygon(emu, "AAPL", "2026-01-08", "2026-01-08")["results"]
    assert partial["v"] == ranged["v"] and partial["c"] == ranged["c"]


def test_bad_parameters_are_400_and_the_key_is_required(emu: str) -> None:
    assert _grouped(emu, "2026-13-01").status_code == 400
    assert _grouped(emu, "2026-01-06", adjusted="maybe").status_code == 400
    assert _grouped(emu, "2026-01-06", include_otc="yes").status_code == 400
    url = f"{emu}/v2/aggs/grouped/locale/us/market/stocks/2026-01-06"
    assert httpx.get(url).status_code == 401

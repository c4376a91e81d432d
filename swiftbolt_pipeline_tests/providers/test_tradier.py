"""TradierClient: request shape, Tradier's response quirks, complete-bar filtering, failures;
then over HTTP against the emulator, compared with the real data."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.errors import (
    AUTH_FAILED,
    MALFORMED_RESPONSE,
    PROVIDER_UNAVAILABLE,
    ProviderError,
)
from swiftbolt_pipeline.core.models import BAR_SCHEMA
from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline.providers.http import RequestStats, UnlimitedLimiter
from swiftbolt_pipeline.providers.tradier import TradierClient
from swiftbolt_pipeline_tests.doubles import FakeClock
from swiftbolt_pipeline_tests.realdata import regular_m15

NY = ZoneInfo("America/New_York")
TOKEN = "tradier-secret-token-42"
BASE = "https://tradier.test"
DAY = date(2026, 3, 11)  # EDT (UTC-4) since 2026-03-08, so 09:30 ET = 13:30 UTC
SESSION = calendar.session(DAY)
NOW = datetime(2026, 3, 11, 10, 40, tzinfo=NY)

JSON = {"content-type": "application/json"}

Handler = Callable[[httpx.Request], httpx.Response]


def et(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def bar(start: datetime, price: float = 100.0, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "time": start.astimezone(NY).strftime("%Y-%m-%dT%H:%M:%S"),
        "timestamp": int(start.timestamp()),
        "price": price,
        "open": price,
        "high": price + 1,
        "low": price - 1,
        "close": price + 0.5,
        "volume": 1000,
        "vwap": price + 0.25,
    }
    return row | overrides


def bars_from(first: datetime, count: int) -> list[dict[str, Any]]:
    return [bar(first + timedelta(minutes=15 * i), 100.0 + i) for i in range(count)]


def client(handler: Handler, clock: FakeClock | None = None) -> TradierClient:
    return TradierClient(
        BASE,
        TOKEN,
        UnlimitedLimiter(),
        clock or FakeClock(NOW),
        transport=httpx.MockTransport(handler),
        max_attempts=3,
        rng=random.Random(7),
    )


def answering(body: Any, seen: list[httpx.Request] | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        # json.dumps, unlike httpx's json=, writes NaN as a lax server would.
        return httpx.Response(200, text=json.dumps(body), headers=JSON)

    return handle


def fetch(handler: Handler, now: datetime = NOW, session: calendar.Session = SESSION):
    stats = RequestStats()
    return client(handler).fetch_session_m15("SPY", session, now, stats), stats


def starts_et(frame: pl.DataFrame) -> list[str]:
    return [ts.astimezone(NY).strftime("%H:%M") for ts in frame["ts"]]


def test_request_shape_on_a_dst_day() -> None:
    seen: list[httpx.Request] = []
    fetch(answering({"series": None}, seen))
    (request,) = seen
    assert request.url.path == "/v1/markets/timesales"
    assert dict(request.url.params) == {
        "symbol": "SPY",
        "interval": "15min",
        "start": "2026-03-11 09:30",  # wall clock, not 13:30 UTC
        "end": "2026-03-11 10:40",
        "session_filter": "open",
    }
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/json"
    assert TOKEN not in str(request.url)


def test_end_is_the_close_after_hours_including_early_close() -> None:
    seen: list[httpx.Request] = []
    fetch(answering({"series": None}, seen), now=et(DAY, 18, 0))
    early = calendar.session(date(2025, 11, 28))
    fetch(answering({"series": None}, seen), now=et(early.day, 16, 0), session=early)
    assert [r.url.params["end"] for r in seen] == ["2026-03-11 16:00", "2025-11-28 13:00"]


def test_no_request_before_the_first_bar_can_be_complete() -> None:
    seen: list[httpx.Request] = []
    frame, stats = fetch(answering({"series": None}, seen), now=et(DAY, 9, 44))
    assert seen == [] and stats.requests == 0 and frame.is_empty()
    assert frame.schema == BAR_SCHEMA


def test_list_parsed_and_incomplete_last_bar_dropped() -> None:
    rows = bars_from(et(DAY, 9, 30), 5)  # 09:30..10:30; at 10:40 the 10:30 bar is in progress
    frame, stats = fetch(answering({"series": {"data": rows}}))
    assert frame.schema == BAR_SCHEMA
    assert starts_et(frame) == ["09:30", "09:45", "10:00", "10:15"]
    assert stats.requests == 1 and stats.retries == 0
    first = frame.row(0, named=True)
    assert first == {
        "ts": datetime(2026, 3, 11, 13, 30, tzinfo=UTC),
        "open": 100.0,
        "high": 101.0,
        "low": 99.0,
        "close": 100.5,
        "volume": 1000,
        "vwap": 100.25,
        "trade_count": None,
    }


def test_bar_ending_exactly_at_now_is_complete() -> None:
    frame, _ = fetch(
        answering({"series": {"data": bars_from(et(DAY, 9, 30), 5)}}), now=et(DAY, 10, 45)
    )
    assert starts_et(frame)[-1] == "10:30"


def test_single_object_and_null_quirks() -> None:
    one, _ = fetch(answering({"series": {"data": bar(et(DAY, 9, 45))}}))
    assert starts_et(one) == ["09:45"]
    for empty in ({"series": None}, {"series": {"data": None}}, {"series": {"data": []}}):
        frame, _ = fetch(answering(empty))
        assert frame.is_empty() and frame.schema == BAR_SCHEMA


def test_a_day_without_trades_as_tradier_answers_it_is_empty() -> None:
    """Tradier answers a day without trades with `"series": "null"`, the string (client
    libraries' recorded fixtures keep exactly this body): an empty day, not a broken answer."""
    body = '{\n\t"series": "null"\n}'
    frame, stats = fetch(lambda _: httpx.Response(200, text=body, headers=JSON), et(DAY, 18, 0))
    assert frame.is_empty() and frame.schema == BAR_SCHEMA
    assert stats.requests == 1


def test_extended_hours_rows_dropped() -> None:
    rows = [bar(et(DAY, 9, 15)), *bars_from(et(DAY, 9, 30), 2), bar(et(DAY, 16, 0))]
    frame, _ = fetch(answering({"series": {"data": rows}}), now=et(DAY, 20, 0))
    assert starts_et(frame) == ["09:30", "09:45"]
    early = calendar.session(date(2025, 11, 28))
    rows = [bar(et(early.day, 12, 45)), bar(et(early.day, 13, 0)), bar(et(early.day, 13, 15))]
    frame, _ = fetch(answering({"series": {"data": rows}}), now=et(early.day, 17, 0), session=early)
    assert starts_et(frame) == ["12:45"]


def test_time_only_or_timestamp_only_is_enough() -> None:
    start = et(DAY, 10, 0)
    no_ts = {k: v for k, v in bar(start).items() if k != "timestamp"}
    no_time = {k: v for k, v in bar(start).items() if k != "time"}
    for row in (no_ts, no_time):
        frame, _ = fetch(answering({"series": {"data": row}}))
        assert frame["ts"].to_list() == [datetime(2026, 3, 11, 14, 0, tzinfo=UTC)]


@pytest.mark.parametrize(
    "row",
    [
        bar(et(DAY, 9, 30), open="100.0"),
        bar(et(DAY, 9, 30), high=None),
        {k: v for k, v in bar(et(DAY, 9, 30)).items() if k != "close"},
        bar(et(DAY, 9, 30), low=float("nan")),
        bar(et(DAY, 9, 30), volume=True),
        bar(et(DAY, 9, 30), vwap="x"),
        bar(et(DAY, 9, 30), time="yesterday"),
        bar(et(DAY, 9, 30), time="2026-03-11T10:30:00"),  # disagrees with timestamp
        {k: v for k, v in bar(et(DAY, 9, 30)).items() if k not in ("time", "timestamp")},
        bar(et(DAY, 9, 37)),  # not on the 15-minute grid
        "not a bar",
    ],
    ids=[
        "str-price",
        "null-high",
        "no-close",
        "nan-low",
        "bool-volume",
        "str-vwap",
        "bad-time",
        "time-vs-timestamp",
        "no-time",
        "off-grid",
        "not-object",
    ],
)
def test_malformed_rows(row: Any) -> None:
    with pytest.raises(ProviderError) as info:
        fetch(answering({"series": {"data": [bar(et(DAY, 9, 45)), row]}}))
    assert info.value.code == MALFORMED_RESPONSE and info.value.requests == 1


@pytest.mark.parametrize(
    "body",
    [{"data": []}, {"series": []}, {"series": {"data": 5}}, {"series": "none"}, [1, 2]],
    ids=str,
)
def test_malformed_payloads(body: Any) -> None:
    with pytest.raises(ProviderError) as info:
        fetch(answering(body))
    assert info.value.code == MALFORMED_RESPONSE


def test_duplicate_bars_rejected() -> None:
    with pytest.raises(ProviderError) as info:
        fetch(answering({"series": {"data": [bar(et(DAY, 9, 30)), bar(et(DAY, 9, 30))]}}))
    assert info.value.code == MALFORMED_RESPONSE


def test_401_is_auth_failed_without_retry() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, text=f"Invalid Access Token {TOKEN}")

    clock = FakeClock(NOW)
    with pytest.raises(ProviderError) as info:
        client(handle, clock).fetch_session_m15("SPY", SESSION, NOW, RequestStats())
    assert info.value.code == AUTH_FAILED and len(seen) == 1 and clock.sleeps == []
    assert TOKEN not in str(info.value)


def test_503_then_success_is_retried() -> None:
    replies = iter(
        [
            httpx.Response(503, text="down"),
            httpx.Response(200, json={"series": {"data": bars_from(et(DAY, 9, 30), 2)}}),
        ]
    )
    clock = FakeClock(NOW)
    stats = RequestStats()
    frame = client(lambda _: next(replies), clock).fetch_session_m15("SPY", SESSION, NOW, stats)
    assert starts_et(frame) == ["09:30", "09:45"]
    assert stats.requests == 2 and stats.retries == 1 and len(clock.sleeps) == 1


def test_token_never_in_error_messages() -> None:
    echo = f"bad request for token {TOKEN}"
    for status in (400, 503):
        with pytest.raises(ProviderError) as info:
            fetch(lambda _, s=status: httpx.Response(s, text=echo))
        assert TOKEN not in str(info.value) and TOKEN not in info.value.message
    assert info.value.code == PROVIDER_UNAVAILABLE


# --- against the emulator, over HTTP -------------------------------------------------------


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with running_emulator(EmulatorSettings(api_key="polygon-key", tradier_token=TOKEN)) as url:
        yield url


def _from_emulator(url: str, day: date, now: datetime, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SWIFTBOLT_NOW", now.isoformat())
    tradier = TradierClient(url, TOKEN, UnlimitedLimiter(), FakeClock(now))
    try:
        stats = RequestStats()
        return tradier.fetch_session_m15("SPY", calendar.session(day), now, stats), stats
    finally:
        tradier.close()


def _ohlcv(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("ts", "open", "high", "low", "close", "volume")


def test_emulator_intraday_on_a_dst_day(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = et(DAY, 11, 5)  # the 11:00 bar is in progress; the emulator serves it
    frame, stats = _from_emulator(emulator_url, DAY, now, monkeypatch)
    assert stats.requests == 1
    assert starts_et(frame) == ["09:30", "09:45", "10:00", "10:15", "10:30", "10:45"]
    assert frame["ts"][0] == datetime(2026, 3, 11, 13, 30, tzinfo=UTC)
    expected = regular_m15("SPY", DAY, DAY).head(6)
    assert _ohlcv(frame).equals(expected.cast(_ohlcv(frame).schema))
    assert frame["vwap"].is_not_null().all() and frame["trade_count"].is_null().all()


def test_emulator_early_close_day(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    day = date(2025, 11, 28)  # day after Thanksgiving: closes 13:00 ET
    frame, _ = _from_emulator(emulator_url, day, et(day, 16, 30), monkeypatch)
    assert len(frame) == 14
    assert starts_et(frame)[0] == "09:30" and starts_et(frame)[-1] == "12:45"
    expected = regular_m15("SPY", day, day)
    assert _ohlcv(frame).equals(expected.cast(_ohlcv(frame).schema))


def test_emulator_rejects_wrong_token(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", et(DAY, 11, 5).isoformat())
    tradier = TradierClient(emulator_url, "wrong-token", UnlimitedLimiter(), FakeClock(NOW))
    with pytest.raises(ProviderError) as info:
        tradier.fetch_session_m15("SPY", SESSION, et(DAY, 11, 5), RequestStats())
    tradier.close()
    assert info.value.code == AUTH_FAILED and "wrong-token" not in str(info.value)


def test_emulator_day_without_bars_is_empty(
    emulator_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = et(DAY, 16, 30)
    monkeypatch.setenv("SWIFTBOLT_NOW", now.isoformat())
    raw = httpx.get(
        f"{emulator_url}/v1/markets/timesales",
        params={"symbol": "ZZNOPE", "interval": "15min", "start": "2026-03-11 09:30"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert raw.json() == {"series": "null"}  # the real API's answer, string and all
    tradier = TradierClient(emulator_url, TOKEN, UnlimitedLimiter(), FakeClock(now))
    try:
        frame = tradier.fetch_session_m15("ZZNOPE", SESSION, now, RequestStats())
    finally:
        tradier.close()
    assert frame.is_empty() and frame.schema == BAR_SCHEMA

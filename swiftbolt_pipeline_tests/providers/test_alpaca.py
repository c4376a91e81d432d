"""AlpacaClient: request shape, batching, pagination, validation and secrecy over
httpx.MockTransport, then against the running emulator over HTTP."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import polars as pl
import pytest

from swiftbolt_pipeline.core import errors
from swiftbolt_pipeline.core.models import BAR_SCHEMA
from swiftbolt_pipeline.providers.alpaca import (
    AlpacaBatch,
    AlpacaBatchError,
    AlpacaClient,
    day_range_rfc3339,
    plan_batches,
)
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY, TEST_NOW
from swiftbolt_pipeline_tests.doubles import FakeClock
from swiftbolt_pipeline_tests.providers.helpers import (
    CountingLimiter,
    Script,
    fake_clock,
    ok,
    raw,
    status,
    truncated,
)

BASE = "https://data.alpaca.test"
KEY_ID = "AKID_TOPSECRET_7q2"
SECRET = "sk_alpaca_TOPSECRET_55x"
FIRST, LAST = date(2024, 3, 4), date(2024, 3, 8)
T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)
STEP = timedelta(minutes=15)


def t(i: int) -> str:
    return (T0 + i * STEP).strftime("%Y-%m-%dT%H:%M:%SZ")


def bar(i: int, **over: Any) -> dict[str, Any]:
    b = {"t": t(i), "o": 10.0 + i, "h": 11.5 + i, "l": 9.25 + i, "c": 10.5 + i, "v": 1000 + i,
         "n": 7 + i, "vw": 10.4 + i}  # fmt: skip
    return b | over


def page(bars: dict[str, list[Any]], token: str | None = None) -> dict[str, Any]:
    return {"bars": bars, "next_page_token": token}


def alpaca(script: Script, seed: int = 5) -> tuple[AlpacaClient, CountingLimiter, FakeClock]:
    clock = fake_clock()
    limiter = CountingLimiter()
    client = AlpacaClient(
        BASE + "/", KEY_ID, SECRET, limiter, clock, transport=script.transport,
        rng=random.Random(seed),
    )  # fmt: skip
    return client, limiter, clock


def fetch(
    client: AlpacaClient, tickers: list[str], stats: RequestStats | None = None
) -> AlpacaBatch:
    try:
        return client.fetch_m15_batch(tickers, FIRST, LAST, stats or RequestStats())
    finally:
        client.close()


def query(request: httpx.Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}


def assert_no_secret(text: str) -> None:
    assert KEY_ID not in text and SECRET not in text


# ---------------------------------------------------------------- pure helpers


def test_plan_batches_groups_by_50() -> None:
    tickers = [f"S{i:02d}" for i in range(60)]
    assert [len(b) for b in plan_batches(tickers)] == [50, 10]
    assert [len(b) for b in plan_batches([f"S{i:03d}" for i in range(100)])] == [50, 50]
    assert plan_batches(["aapl", "AAPL", " msft ", "", "SPY"]) == [["AAPL", "MSFT", "SPY"]]
    assert plan_batches([]) == []
    assert [t for group in plan_batches(tickers) for t in group] == tickers


def test_day_range_is_new_york_days_in_utc_across_dst() -> None:
    assert day_range_rfc3339(date(2024, 3, 4), date(2024, 3, 8)) == (
        "2024-03-04T05:00:00Z",
        "2024-03-09T04:59:59Z",
    )
    assert day_range_rfc3339(date(2024, 3, 8), date(2024, 3, 11)) == (
        "2024-03-08T05:00:00Z",  # EST
        "2024-03-12T03:59:59Z",  # EDT
    )
    assert day_range_rfc3339(date(2025, 6, 2), date(2025, 6, 2)) == (
        "2025-06-02T04:00:00Z",
        "2025-06-03T03:59:59Z",
    )


# ---------------------------------------------------------------- over MockTransport


def test_request_shape_frames_and_missing_symbols() -> None:
    script = Script(ok(page({"AAPL": [bar(1), bar(0, vw=None, n=None)], "MSFT": [bar(0, o=20.0)]})))
    client, limiter, clock = alpaca(script)
    batch = fetch(client, ["AAPL", "MSFT", "ZZNOPE"])
    (req,) = script.requests
    assert req.url.path == "/v2/stocks/bars"
    assert query(req) == {
        "symbols": "AAPL,MSFT,ZZNOPE",
        "timeframe": "15Min",
        "start": "2024-03-04T05:00:00Z",
        "end": "2024-03-09T04:59:59Z",
        "limit": "10000",
        "adjustment": "all",
        "sort": "asc",
    }
    assert req.headers["APCA-API-KEY-ID"] == KEY_ID
    assert req.headers["APCA-API-SECRET-KEY"] == SECRET
    assert "authorization" not in req.headers
    assert_no_secret(str(req.url))
    assert list(batch.bars) == ["AAPL", "MSFT", "ZZNOPE"]
    assert batch.missing == ["ZZNOPE"] and batch.batches == 1
    for frame in batch.bars.values():
        assert frame.schema == pl.Schema(BAR_SCHEMA)
    assert batch.bars["AAPL"].to_dicts() == [
        {"ts": T0, "open": 10.0, "high": 11.5, "low": 9.25, "close": 10.5, "volume": 1000,
         "vwap": None, "trade_count": None},
        {"ts": T0 + STEP, "open": 11.0, "high": 12.5, "low": 10.25, "close": 11.5,
         "volume": 1001, "vwap": 11.4, "trade_count": 8},
    ]  # fmt: skip
    assert batch.bars["MSFT"]["open"].to_list() == [20.0]
    assert batch.bars["ZZNOPE"].height == 0
    err = batch.error_for("ZZNOPE")
    assert err is not None and err.code == errors.SYMBOL_NOT_FOUND
    assert batch.error_for("AAPL") is None
    assert limiter.calls == 1 and clock.sleeps == []


def test_other_time_spellings_and_fractional_counts() -> None:
    """Alpaca writes `...Z`; an offset or fractional seconds is the same instant. A fractional
    volume (crypto) is rounded half to even like Python's round(); a fractional trade count is
    truncated; integer prices are prices."""
    bars = [
        bar(0, t="2024-03-04T09:30:00-05:00", v=2.5, n=7.9),
        bar(1, t="2024-03-04T14:45:00.000+00:00", v=3.5, o=11),
        bar(2, v=0.4999, vw=12),
    ]
    client, _, _ = alpaca(Script(ok(page({"AAPL": bars}))))
    frame = fetch(client, ["AAPL"]).bars["AAPL"]
    assert frame["ts"].to_list() == [T0, T0 + STEP, T0 + 2 * STEP]
    assert frame["volume"].to_list() == [2, 4, 0]
    assert frame["trade_count"].to_list() == [7, 8, 9]
    assert frame["open"].to_list() == [10.0, 11.0, 12.0]
    assert frame["vwap"].to_list() == [10.4, 11.4, 12.0]
    assert frame.schema == pl.Schema(BAR_SCHEMA)


def test_optional_feed_is_sent() -> None:
    script = Script(ok(page({})))
    client = AlpacaClient(BASE, KEY_ID, SECRET, CountingLimiter(), fake_clock(),
                          transport=script.transport, feed="iex")  # fmt: skip
    batch = fetch(client, ["AAPL"])
    assert query(script.requests[0])["feed"] == "iex"
    assert batch.missing == ["AAPL"]


def test_pagination_by_page_token_with_jitter() -> None:
    script = Script(
        ok(page({"AAPL": [bar(0), bar(1)]}, "tok-1")),
        ok(page({"AAPL": [bar(2)], "MSFT": [bar(0), bar(1)]}, "tok-2")),
        ok(page({"MSFT": [bar(2)]}, None)),
    )
    client, limiter, clock = alpaca(script)
    stats = RequestStats()
    batch = fetch(client, ["MSFT", "AAPL", "GOOG"], stats)
    first = query(script.requests[0])
    assert "page_token" not in first
    for req, token in zip(script.requests[1:], ("tok-1", "tok-2"), strict=True):
        q = query(req)
        assert q.pop("page_token") == token
        assert q == first  # every other parameter unchanged
        assert_no_secret(str(req.url))
    for ticker in ("AAPL", "MSFT"):
        frame = batch.bars[ticker]
        assert frame.height == 3 and frame["ts"].is_sorted() and frame["ts"].is_unique().all()
    assert batch.missing == ["GOOG"]
    assert stats.requests == 3 == limiter.calls
    assert len(clock.sleeps) == 2 and all(0.25 <= s <= 0.5 for s in clock.sleeps)


class FakeAlpaca:
    """A server answering with `per_symbol` bars for each listed symbol, `page_bars` per page."""

    def __init__(self, per_symbol: int = 3, page_bars: int = 40) -> None:
        self.per_symbol = per_symbol
        self.page_bars = page_bars
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        q = query(request)
        symbols = sorted(q["symbols"].split(","))
        assert len(symbols) <= 50
        flat = [(s, i) for s in symbols if not s.startswith("ZZ") for i in range(self.per_symbol)]
        offset = int(q.get("page_token", "0"))
        chunk = flat[offset : offset + self.page_bars]
        bars: dict[str, list[dict[str, Any]]] = {}
        for s, i in chunk:
            bars.setdefault(s, []).append(bar(i))
        more = offset + self.page_bars < len(flat)
        return ok(page(bars, str(offset + self.page_bars) if more else None))


def test_60_symbols_are_two_batches_plus_forced_pages() -> None:
    server = FakeAlpaca(per_symbol=3, page_bars=40)
    tickers = [f"S{i:02d}" for i in range(58)] + ["ZZA", "ZZB"]
    client, limiter, clock = alpaca(Script(server))
    stats = RequestStats()
    batch = fetch(client, tickers, stats)
    firsts = [query(r) for r in server.requests if "page_token" not in query(r)]
    assert [len(q["symbols"].split(",")) for q in firsts] == [50, 10]
    assert firsts[0]["symbols"].split(",") + firsts[1]["symbols"].split(",") == tickers
    # 50 x 3 = 150 bars -> 4 pages of 40; 8 x 3 = 24 bars -> 1 page
    assert stats.requests == 2 + 3 == limiter.calls == len(server.requests)
    assert batch.batches == 2
    assert batch.missing == ["ZZA", "ZZB"]
    assert list(batch.bars) == tickers
    assert all(batch.bars[s].height == 3 for s in tickers[:58])
    assert len(clock.sleeps) == 3  # between pages of a batch only


def test_401_and_403_are_auth_failed_after_one_request() -> None:
    for code in (401, 403):
        script = Script(status(code, body={"message": "forbidden"}))
        client, limiter, clock = alpaca(script)
        with pytest.raises(errors.ProviderError) as info:
            fetch(client, ["AAPL"])
        assert info.value.code == errors.AUTH_FAILED
        assert info.value.requests == 1 == limiter.calls == len(script.requests)
        assert clock.sleeps == []
        assert_no_secret(str(info.value))


def test_429_and_5xx_are_retried_inside_a_page() -> None:
    script = Script(
        ok(page({"AAPL": [bar(0)]}, "tok")),
        status(429, {"Retry-After": "3"}, {"message": "too many requests."}),
        status(503),
        ok(page({"AAPL": [bar(1)]})),
    )
    client, limiter, clock = alpaca(script)
    stats = RequestStats()
    batch = fetch(client, ["AAPL"], stats)
    assert batch.bars["AAPL"].height == 2
    assert (stats.requests, stats.retries, stats.rate_limited) == (4, 2, 1) and limiter.calls == 4
    assert [query(r).get("page_token") for r in script.requests] == [None, "tok", "tok", "tok"]
    assert clock.sleeps[1] == 3.0  # Retry-After honoured


def test_rate_limit_exhausted_is_rate_limit_exceeded() -> None:
    script = Script(status(429, body={"message": "too many requests."}))
    client, limiter, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.RATE_LIMIT_EXCEEDED
    assert info.value.requests == 5 == limiter.calls


def test_invalid_timeframe_has_its_own_code() -> None:
    script = Script(status(422, body={"code": 42210000, "message": "invalid timeframe"}))
    client, limiter, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.INVALID_TIMEFRAME
    assert limiter.calls == 1


def test_other_4xx_is_bad_request_not_retried() -> None:
    script = Script(status(400, body={"code": 40010000, "message": "invalid symbol: 'A B'"}))
    client, limiter, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.BAD_REQUEST and limiter.calls == 1


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"next_page_token": None},
        {"bars": [bar(0)], "next_page_token": None},
        {"bars": {"AAPL": bar(0)}, "next_page_token": None},
        page({"AAPL": [bar(0, o=None)]}),
        page({"AAPL": [bar(0, c="10.5")]}),
        page({"AAPL": [bar(0, v=True)]}),
        page({"AAPL": [{k: v for k, v in bar(0).items() if k != "h"}]}),
        page({"AAPL": [bar(0, vw="x")]}),
        page({"AAPL": [bar(0, t="2024-03-04T14:30:00")]}),  # no offset
        page({"AAPL": [bar(0, t=1709562600000)]}),
        page({"AAPL": [bar(0, t="2024-03-04T14:31:00Z")]}),  # off the 15-minute grid
        page({"AAPL": [bar(0), bar(0)]}),
        page({"AAPL": ["not a bar"]}),
        page({"TSLA": [bar(0)]}),  # not requested
        {"bars": {"AAPL": [bar(0)]}, "next_page_token": 42},
    ],
    ids=[
        "list",
        "no-bars",
        "bars-list",
        "symbol-object",
        "null-open",
        "string-close",
        "bool-volume",
        "missing-high",
        "string-vw",
        "naive-time",
        "epoch-time",
        "off-grid",
        "duplicate",
        "not-a-dict",
        "unrequested-symbol",
        "int-token",
    ],
)
def test_malformed_payloads(body: Any) -> None:
    script = Script(ok(body))
    client, limiter, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL", "MSFT"])
    assert info.value.code == errors.MALFORMED_RESPONSE
    assert info.value.requests == 1 == limiter.calls


def test_non_finite_and_truncated_bodies_are_malformed() -> None:
    text = json.dumps(page({"AAPL": [bar(0)]})).replace('"h": 11.5', '"h": NaN')
    client, _, _ = alpaca(Script(raw(text)))
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.MALFORMED_RESPONSE
    client, limiter, _ = alpaca(Script(truncated(page({"AAPL": [bar(0)]}))))
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.MALFORMED_RESPONSE and limiter.calls == 5


def test_a_repeating_page_token_is_malformed_not_an_endless_loop() -> None:
    script = Script(ok(page({"AAPL": [bar(0)]}, "same")), ok(page({"AAPL": [bar(1)]}, "same")))
    client, limiter, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.MALFORMED_RESPONSE and limiter.calls == 2


def test_a_failed_second_batch_keeps_the_first(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeAlpaca(per_symbol=1, page_bars=100)

    def answer(request: httpx.Request) -> httpx.Response:
        if len(query(request)["symbols"].split(",")) < 50:
            return status(503, body={"message": f"boom {SECRET}"})
        return server(request)

    tickers = [f"S{i:02d}" for i in range(60)]
    client, limiter, _ = alpaca(Script(answer))
    with pytest.raises(AlpacaBatchError) as info:
        fetch(client, tickers)
    exc = info.value
    assert isinstance(exc, errors.ProviderError)
    assert exc.code == errors.PROVIDER_UNAVAILABLE
    assert exc.requests == 6 == limiter.calls  # 1 + 5 attempts
    assert list(exc.completed.bars) == tickers[:50] and exc.completed.batches == 1
    assert exc.pending == tickers[50:]
    assert_no_secret(str(exc))
    assert all(KEY_ID not in r.getMessage() and SECRET not in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_secrets_never_in_messages_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Script(httpx.ConnectError(f"refused: {KEY_ID}:{SECRET}"))
    client, _, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert info.value.code == errors.PROVIDER_UNAVAILABLE
    assert_no_secret(str(info.value))
    assert caplog.records
    for record in caplog.records:
        assert_no_secret(record.getMessage())
    script = Script(status(400, body={"message": f"bad key {KEY_ID} / {SECRET}"}))
    client, _, _ = alpaca(script)
    with pytest.raises(errors.ProviderError) as info:
        fetch(client, ["AAPL"])
    assert_no_secret(str(info.value))


def test_no_request_for_no_tickers_and_bad_range_refused() -> None:
    script = Script(ok(page({})))
    client, limiter, _ = alpaca(script)
    batch = client.fetch_m15_batch([], FIRST, LAST, RequestStats())
    assert batch.bars == {} and batch.missing == [] and limiter.calls == 0
    with pytest.raises(ValueError):
        client.fetch_m15_batch(["AAPL"], LAST, FIRST, RequestStats())
    client.close()
    assert script.requests == []


# ---------------------------------------------------------------- against the emulator

EMU_FIRST, EMU_LAST = date(2025, 6, 2), date(2025, 6, 6)
DEFAULTS = {"rate_limit": None, "rate_window_s": 60, "retry_after": False, "page_size": None}


@pytest.fixture
def emu(emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("SWIFTBOLT_NOW", TEST_NOW)
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    httpx.put(f"{emulator}/_emulator/config", json=DEFAULTS).raise_for_status()
    yield emulator
    httpx.delete(f"{emulator}/_emulator/faults").raise_for_status()
    httpx.put(f"{emulator}/_emulator/config", json=DEFAULTS).raise_for_status()
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()


def emu_stats(emu: str) -> dict[str, Any]:
    return httpx.get(f"{emu}/_emulator/stats").json()


def emu_client(emu: str, limiter: CountingLimiter, secret: str = EMULATOR_KEY) -> AlpacaClient:
    clock = FakeClock(datetime(2026, 3, 20, tzinfo=UTC))
    return AlpacaClient(emu, EMULATOR_KEY, secret, limiter, clock, rng=random.Random(3))


def emu_fetch(emu: str, tickers: list[str], stats: RequestStats, **kw: Any) -> AlpacaBatch:
    client = emu_client(emu, CountingLimiter(), **kw)
    try:
        return client.fetch_m15_batch(tickers, EMU_FIRST, EMU_LAST, stats)
    finally:
        client.close()


def polygon_frame(emu: str, ticker: str) -> pl.DataFrame:
    client = PolygonClient(emu, EMULATOR_KEY, CountingLimiter(), fake_clock())
    try:
        return client.fetch_m15(ticker, EMU_FIRST, EMU_LAST, RequestStats())
    finally:
        client.close()


def test_values_equal_the_polygon_handler(emu: str) -> None:
    batch = emu_fetch(emu, ["SPY", "SBALPA", "ZZNOPE"], RequestStats())
    assert batch.missing == ["ZZNOPE"]
    for ticker in ("SPY", "SBALPA"):
        expected = polygon_frame(emu, ticker)
        assert expected.height >= 5 * 26
        assert batch.bars[ticker].equals(expected), ticker
    log = emu_stats(emu)["log"]
    assert all(EMULATOR_KEY not in str(entry) for entry in log)


def test_60_symbols_cost_two_batches_plus_forced_pages(emu: str) -> None:
    tickers = [f"SBA{i:02d}" for i in range(60)]
    stats = RequestStats()
    batch = emu_fetch(emu, tickers, stats)
    assert batch.missing == [] and batch.batches == 2
    sizes = [sum(batch.bars[t].height for t in group) for group in plan_batches(tickers)]
    pages = [math.ceil(n / 10_000) for n in sizes]
    assert pages == [2, 1]  # 50 x 5 days x ~60 bars > 10000: one page forced
    counted = emu_stats(emu)
    assert stats.requests == sum(pages) == counted["requests"]["alpaca"] == 3
    assert counted["requests"]["polygon"] == 0 and counted["rejected_429"]["alpaca"] == 0
    firsts = [e["query"] for e in counted["log"] if "page_token" not in e["query"]]
    assert [parse_qs(q)["symbols"][0].count(",") + 1 for q in firsts] == [50, 10]
    for ticker in tickers:
        frame = batch.bars[ticker]
        assert frame.height > 5 * 26 and frame["ts"].is_unique().all() and frame["ts"].is_sorted()
    assert batch.bars["SBA07"].equals(polygon_frame(emu, "SBA07"))
    assert batch.bars["SBA55"].equals(polygon_frame(emu, "SBA55"))


def test_forced_small_pages_over_http(emu: str) -> None:
    whole = emu_fetch(emu, ["SBB1", "SBB2", "SBB3"], RequestStats())
    httpx.put(f"{emu}/_emulator/config", json={"page_size": 101}).raise_for_status()
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    stats = RequestStats()
    paged = emu_fetch(emu, ["SBB1", "SBB2", "SBB3"], stats)
    total = sum(f.height for f in whole.bars.values())
    assert stats.requests == math.ceil(total / 101) == emu_stats(emu)["requests"]["alpaca"]
    for ticker, frame in whole.bars.items():
        assert paged.bars[ticker].equals(frame)


def test_faults_are_retried_over_http(emu: str) -> None:
    expected = emu_fetch(emu, ["SBC1"], RequestStats()).bars["SBC1"]
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    httpx.post(
        f"{emu}/_emulator/faults",
        json=[
            {"route": "alpaca", "kind": "status", "status": 503},
            {"route": "alpaca", "kind": "malformed"},
            {"route": "alpaca", "kind": "disconnect"},
        ],
    ).raise_for_status()
    stats = RequestStats()
    got = emu_fetch(emu, ["SBC1"], stats).bars["SBC1"]
    assert got.equals(expected)
    assert (stats.requests, stats.retries) == (4, 3)
    assert emu_stats(emu)["requests"]["alpaca"] == 4


def test_wrong_secret_and_rate_limit_over_http(emu: str) -> None:
    with pytest.raises(errors.ProviderError) as info:
        emu_fetch(emu, ["SBD1"], RequestStats(), secret="wrong-secret")
    assert info.value.code == errors.AUTH_FAILED and info.value.requests == 1
    assert "wrong-secret" not in str(info.value)
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    httpx.put(f"{emu}/_emulator/config", json={"rate_limit": 1}).raise_for_status()
    emu_fetch(emu, ["SBD1"], RequestStats())
    stats = RequestStats()
    with pytest.raises(errors.ProviderError) as info:
        emu_fetch(emu, ["SBD1"], stats)  # the fake clock does not wait out the window
    assert info.value.code == errors.RATE_LIMIT_EXCEEDED
    assert stats.rate_limited == 5
    counted = emu_stats(emu)
    assert counted["requests"]["alpaca"] == 6 and counted["rejected_429"]["alpaca"] == 5

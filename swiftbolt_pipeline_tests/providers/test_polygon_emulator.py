"""PolygonClient against the real emulator over HTTP (no mocks in between)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime

import httpx
import polars as pl
import pytest

from swiftbolt_pipeline.core import errors
from swiftbolt_pipeline.core.models import BAR_SCHEMA
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.doubles import FakeClock
from swiftbolt_pipeline_tests.providers.helpers import CountingLimiter

FIRST, LAST = date(2024, 4, 1), date(2024, 4, 26)  # four weeks, 20 sessions
TICKER = "SBTEST"
DEFAULTS = {
    "rate_limit": None,
    "rate_window_s": 60,
    "retry_after": False,
    "page_size": None,
    "next_url_base": None,
    "now": None,
}


@pytest.fixture
def emu(emulator: str) -> Iterator[str]:
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    httpx.put(f"{emulator}/_emulator/config", json=DEFAULTS).raise_for_status()
    yield emulator
    httpx.delete(f"{emulator}/_emulator/faults").raise_for_status()
    httpx.put(f"{emulator}/_emulator/config", json=DEFAULTS).raise_for_status()
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()


def served(emu: str, ticker: str = TICKER) -> pl.DataFrame:
    """What the emulator serves for the range, in one page, read independently of the client."""
    body = httpx.get(
        f"{emu}/v2/aggs/ticker/{ticker}/range/15/minute/{FIRST}/{LAST}",
        params={"adjusted": "true", "sort": "asc", "limit": "50000"},
        headers={"Authorization": f"Bearer {EMULATOR_KEY}"},
        timeout=30,
    ).json()
    assert "next_url" not in body
    return pl.DataFrame(
        {
            "ts": [datetime.fromtimestamp(b["t"] / 1000, UTC) for b in body["results"]],
            "open": [float(b["o"]) for b in body["results"]],
            "high": [float(b["h"]) for b in body["results"]],
            "low": [float(b["l"]) for b in body["results"]],
            "close": [float(b["c"]) for b in body["results"]],
            "volume": [int(b["v"]) for b in body["results"]],
            "vwap": [float(b["vw"]) for b in body["results"]],
            "trade_count": [int(b["n"]) for b in body["results"]],
        },
        schema=BAR_SCHEMA,
    )


def stats_of(emu: str) -> dict:
    return httpx.get(f"{emu}/_emulator/stats").json()


def client(emu: str, limiter: CountingLimiter, clock: FakeClock) -> PolygonClient:
    return PolygonClient(emu, EMULATOR_KEY, limiter, clock, rng=random.Random(2))


def test_multi_week_fetch_equals_served_bars(emu: str) -> None:
    expected = served(emu)
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    limiter, clock = CountingLimiter(), FakeClock(datetime(2026, 3, 20, tzinfo=UTC))
    c = client(emu, limiter, clock)
    stats = RequestStats()
    try:
        got = c.fetch_m15(TICKER, FIRST, LAST, stats)
    finally:
        c.close()
    assert got.height > 20 * 26  # regular and extended hours over 20 sessions
    assert got.equals(expected)
    assert stats.requests == 1 == limiter.calls == stats_of(emu)["requests"]["polygon"]
    log = stats_of(emu)["log"]
    assert all("apiKey" not in str(entry) for entry in log)
    assert all(EMULATOR_KEY not in str(entry) for entry in log)


def test_forced_small_pages_are_all_followed_without_duplicates(emu: str) -> None:
    expected = served(emu)
    httpx.put(f"{emu}/_emulator/config", json={"page_size": 97}).raise_for_status()
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    limiter, clock = CountingLimiter(), FakeClock(datetime(2026, 3, 20, tzinfo=UTC))
    c = client(emu, limiter, clock)
    stats = RequestStats()
    try:
        got = c.fetch_m15(TICKER, FIRST, LAST, stats)
    finally:
        c.close()
    pages = -(-expected.height // 97)
    assert pages >= 5
    assert stats.requests == pages == limiter.calls == stats_of(emu)["requests"]["polygon"]
    assert got["ts"].is_unique().all() and got["ts"].is_sorted()
    assert got.equals(expected)
    assert len(clock.sleeps) == pages - 1
    assert all(0.25 <= s <= 0.5 for s in clock.sleeps)


def test_unknown_ticker_is_empty(emu: str) -> None:
    c = client(emu, CountingLimiter(), FakeClock(datetime(2026, 3, 20, tzinfo=UTC)))
    try:
        got = c.fetch_m15("ZZNOPE", FIRST, LAST, RequestStats())
    finally:
        c.close()
    assert got.height == 0 and got.schema == pl.Schema(BAR_SCHEMA)


def test_injected_faults_are_retried_over_real_http(
    emu: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    expected = served(emu)
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    httpx.post(
        f"{emu}/_emulator/faults",
        json=[
            {"route": "polygon", "kind": "status", "status": 503, "count": 1},
            {"route": "polygon", "kind": "malformed", "count": 1},
            {"route": "polygon", "kind": "disconnect", "count": 1},
        ],
    ).raise_for_status()
    limiter, clock = CountingLimiter(), FakeClock(datetime(2026, 3, 20, tzinfo=UTC))
    c = client(emu, limiter, clock)
    stats = RequestStats()
    try:
        got = c.fetch_m15(TICKER, FIRST, LAST, stats)
    finally:
        c.close()
    assert got.equals(expected)
    assert (stats.requests, stats.retries) == (4, 3)
    assert limiter.calls == 4 == stats_of(emu)["requests"]["polygon"]
    assert len(clock.sleeps) == 3  # backoff sleeps only, all on the fake clock
    assert all(EMULATOR_KEY not in r.getMessage() for r in caplog.records)


def test_wrong_key_is_auth_failed(emu: str) -> None:
    c = PolygonClient(
        emu, "wrong-key", CountingLimiter(), FakeClock(datetime(2026, 3, 20, tzinfo=UTC))
    )
    try:
        with pytest.raises(errors.ProviderError) as info:
            c.fetch_m15(TICKER, FIRST, LAST, RequestStats())
    finally:
        c.close()
    assert info.value.code == errors.AUTH_FAILED
    assert info.value.requests == 1
    assert "wrong-key" not in str(info.value)


def test_next_url_naming_the_new_host_is_followed_on_the_emulator(emu: str) -> None:
    """Polygon's `next_url` names https://api.massive.com since its rebrand; the client follows
    the cursor on the host it is configured for (here the emulator), page after page."""
    expected = served(emu)
    config = {"page_size": 97, "next_url_base": "https://api.massive.com"}
    httpx.put(f"{emu}/_emulator/config", json=config).raise_for_status()
    first = httpx.get(
        f"{emu}/v2/aggs/ticker/{TICKER}/range/15/minute/{FIRST}/{LAST}",
        headers={"Authorization": f"Bearer {EMULATOR_KEY}"},
    ).json()
    assert first["next_url"].startswith(f"https://api.massive.com/v2/aggs/ticker/{TICKER}/")
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    limiter = CountingLimiter()
    c = client(emu, limiter, FakeClock(datetime(2026, 3, 20, tzinfo=UTC)))
    stats = RequestStats()
    try:
        got = c.fetch_m15(TICKER, FIRST, LAST, stats)
    finally:
        c.close()
    assert got.equals(expected)
    pages = -(-expected.height // 97)
    assert stats.requests == pages == stats_of(emu)["requests"]["polygon"]


def test_pages_resume_after_a_stored_bar(emu: str) -> None:
    """Page by page, then again from the middle of the window: `after` asks the emulator for an
    ms `from` (the next slot) and the bars served are exactly those after the stored one."""
    expected = served(emu)
    httpx.put(f"{emu}/_emulator/config", json={"page_size": 200}).raise_for_status()
    c = client(emu, CountingLimiter(), FakeClock(datetime(2026, 3, 20, tzinfo=UTC)))
    try:
        pages = list(c.iter_m15_pages(TICKER, FIRST, LAST, RequestStats()))
        assert [p.height for p in pages[:-1]] == [200] * (len(pages) - 1)
        assert pl.concat(pages).equals(expected)
        stored = pages[1]["ts"][-1]  # killed after committing two pages
        httpx.post(f"{emu}/_emulator/reset").raise_for_status()
        stats = RequestStats()
        rest = list(c.iter_m15_pages(TICKER, FIRST, LAST, stats, after=stored))
    finally:
        c.close()
    assert pl.concat(rest).equals(expected.filter(pl.col("ts") > stored))
    assert stats.requests == len(pages) - 2 == len(rest)
    path = stats_of(emu)["log"][0]["path"]
    assert path.endswith(f"/{int(stored.timestamp() * 1000) + 15 * 60_000}/{LAST}")

"""`swiftbolt backfill` with Alpaca serving: symbols go in runs of up to 50, sharing requests."""

from __future__ import annotations

import math
import re
from datetime import date
from urllib.parse import parse_qs

import httpx
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.defs.test_provider_routing import _as_served, _regular
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.reliability.helpers import (
    emulator_requests,
    reset_emulator,
    served_bars,
    stored_m15,
)

# Four sessions of generated bars (the tickers are not in the shipped data).
DAYS = calendar.sessions_between(date(2026, 3, 9), date(2026, 3, 12))
SYMBOLS = [f"Q{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(60)]
BATCH, PAGE_LIMIT = 50, 10_000  # Alpaca: symbols per request, bars per page over all of them


@pytest.mark.slow  # ~20-30 s of end-to-end work; CI's slow suite runs it
def test_sixty_alpaca_symbols_backfill_in_two_runs(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    assert len(DAYS) == 4
    # The truth: the emulator's full answer per symbol (extended hours included, as the
    # Alpaca endpoint counts them against its page limit) and its regular-session bars.
    served = {s: served_bars(emulator, s, DAYS[0], DAYS[-1]) for s in SYMBOLS}
    regular = {s: _regular(served[s], DAYS) for s in SYMBOLS}
    chunks = [SYMBOLS[i : i + BATCH] for i in range(0, len(SYMBOLS), BATCH)]
    pages = [math.ceil(sum(len(served[s]) for s in chunk) / PAGE_LIMIT) for chunk in chunks]
    assert len(chunks) == 2 and pages[0] > 1  # the shared page limit really forces a page
    bars = sum(len(rows) for rows in regular.values())
    reset_emulator(emulator)

    env = {**pipeline_env, "SWIFTBOLT_HISTORY_PROVIDERS": "alpaca"}
    result = run_cli(
        "backfill", "--symbols", ",".join(SYMBOLS), "--start", DAYS[0].isoformat(),
        "--end", DAYS[-1].isoformat(), "--timeframes", "m15,h1,h4", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"2 run(s), {len(SYMBOLS) * len(DAYS)} partition(s), {bars} m15 bars written, "
        f"{sum(pages)} request(s)"
    ) in result.stderr
    # A progress line per symbol, every one complete.
    for symbol in SYMBOLS:
        assert re.search(rf"^{symbol} .* {len(DAYS)}/{len(DAYS)} sessions", result.stderr, re.M)
    assert conn.execute("SELECT count(*) FROM dagster.runs").fetchone() == (2,)
    assert emulator_requests(emulator, "alpaca") == sum(pages)
    assert emulator_requests(emulator, "polygon") == 0
    log = httpx.get(f"{emulator}/_emulator/stats").json()["log"]
    firsts = [
        parse_qs(e["query"])["symbols"][0].split(",")
        for e in log
        if e["path"] == "/v2/stocks/bars" and "page_token" not in e["query"]
    ]
    assert firsts == chunks
    for symbol in SYMBOLS:
        assert _as_served(stored_m15(conn, symbol)) == regular[symbol], symbol
    # Derived from those bars in the same runs: 7 h1, 2 h4 per session.
    derived = conn.execute(
        "SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe IN ('h1', 'h4')"
    ).fetchone()
    assert derived == (len(SYMBOLS) * len(DAYS) * (7 + 2),)

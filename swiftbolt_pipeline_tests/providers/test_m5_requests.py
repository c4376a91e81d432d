"""Two years of one symbol's 5-minute bars cost exactly the requests of its 15-minute bars,
counted at the emulator, through the history fetch path and the one write path (no Dagster:
the full asset runs are `defs/test_m5_asset.py`'s slow test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date

import httpx
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.ingest.history import (
    HistoryTask,
    finish_history,
    history_round,
    start_history,
)
from swiftbolt_pipeline.providers.registry import PROVIDERS, HistoryProvider, open_client
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY

TWO_YEARS = calendar.sessions_between(date(2024, 3, 20), date(2026, 3, 19))
CREDENTIALS = {Provider.POLYGON: [EMULATOR_KEY], Provider.ALPACA: [EMULATOR_KEY, EMULATOR_KEY]}


@contextmanager
def _client(provider: Provider, db_url: str, emulator: str) -> Iterator[HistoryProvider]:
    with open_client(
        provider, PROVIDERS[provider].client, database_url=db_url, base_url=emulator,
        credentials=CREDENTIALS[provider],
    ) as client:  # fmt: skip
        assert isinstance(client, HistoryProvider)
        yield client


def _fetch(
    conn: psycopg.Connection, provider: Provider, timeframe: Timeframe, db_url: str, emulator: str
) -> tuple[int, int]:
    """(requests the emulator counted, bars stored) for two years of NVDA in `timeframe`."""
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    (symbol_id,) = watchlist.ensure(conn, ["NVDA"]).values()
    with ExitStack() as stack:
        run = start_history(
            conn, [provider], [HistoryTask("NVDA", symbol_id, TWO_YEARS)], timeframe=timeframe
        )
        history_round(
            conn, run, lambda p: stack.enter_context(_client(p, db_url, emulator)), run_id="t"
        )
        (result,) = finish_history(conn, run)
    assert result.error is None, result.error
    counted = httpx.get(f"{emulator}/_emulator/requests").json()[provider.value]["NVDA"]
    assert result.stats.requests == counted
    return counted, result.bars_written


@pytest.mark.parametrize("provider", [Provider.POLYGON, Provider.ALPACA])
def test_two_years_of_m5_cost_the_requests_of_m15(
    provider: Provider, pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    assert len(TWO_YEARS) == 501
    db_url = pipeline_env["DATABASE_URL"]
    m15_requests, m15_bars = _fetch(conn, provider, Timeframe.M15, db_url, emulator)
    m5_requests, m5_bars = _fetch(conn, provider, Timeframe.M5, db_url, emulator)
    # ceil(501 sessions x 960 base minutes / 50,000) = 10 windows, each one request.
    assert m5_requests == m15_requests == 10
    # The same sessions, 5-minute bars: about three per 15-minute bar (the generated symbol
    # skips some minutes, the real NVDA bars never do).
    assert 2 * m15_bars < m5_bars <= 3 * m15_bars
    rows = conn.execute(
        "SELECT timeframe, count(*) FROM ohlc_bars_v2 GROUP BY timeframe ORDER BY 1"
    ).fetchall()
    assert rows == [("m15", m15_bars), ("m5", m5_bars)]

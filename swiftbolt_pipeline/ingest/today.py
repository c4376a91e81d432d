"""Today's session from the intraday provider (Tradier time & sales), stored as provisional
(`is_intraday`) bars until the history provider's final bars replace them once the day is past.

The bars take the one write path (`ingest.store.WindowStore`) with the same cleaning rules as
history. A session with no clean bar yet keeps what is stored."""

from __future__ import annotations

import logging
from datetime import date, datetime

import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.errors import ProviderError
from swiftbolt_pipeline.core.models import RAW_BAR_MINUTES, Timeframe
from swiftbolt_pipeline.ingest.store import SymbolIngest, WindowStore, window_of
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.registry import TodayProvider

log = logging.getLogger(__name__)


def ingest_today(
    conn: psycopg.Connection,
    client: TodayProvider,
    *,
    run_id: str,
    symbol: str,
    symbol_id: int,
    day: date,
    now: datetime,
    timeframe: Timeframe = Timeframe.M15,
) -> SymbolIngest:
    """Replace today's partition with the complete 15-minute (`timeframe` m5: 5-minute) bars
    the provider has so far. A failure is the symbol's outcome (`error`), never another
    symbol's."""
    result = SymbolIngest(
        symbol=symbol, days=[day], providers=(client.provider,), timeframe=timeframe
    )
    window = window_of([day])
    stats = RequestStats()
    store = WindowStore.start(
        conn, run_id, client.provider, symbol_id, window, result, is_intraday=True
    )
    try:
        bars = client.fetch_session_m15(
            symbol, calendar.session(day), now, stats, bar_minutes=RAW_BAR_MINUTES[timeframe]
        )
        store.add(bars, stats)
        store.finish(stats)
    except ProviderError as exc:
        store.fail(stats, exc)
        result.error = exc
    finally:
        result.stats.add(stats)
    if result.error is None and not result.bars_written:
        log.info("%s today (%s): no complete bars from %s yet", symbol, day, client.provider)
    return result

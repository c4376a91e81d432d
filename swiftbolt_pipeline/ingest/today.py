"""Today's session from Tradier time & sales, stored as intraday bars until Polygon replaces
them once the day is historical (design §3 provider routing).

The bars go through the same `core.clean` rules as history. The partition is replaced only when
at least one clean bar remains: an empty or wholly rejected answer keeps what is stored."""

from __future__ import annotations

import logging
from datetime import date, datetime

import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clean import clean_m15
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.ingest.m15 import (
    SymbolIngest,
    fail_window,
    written_days,
    wrong_interval_error,
)
from swiftbolt_pipeline.providers.errors import ProviderError
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.tradier import TradierClient
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import ledger

log = logging.getLogger(__name__)


def ingest_today(
    conn: psycopg.Connection,
    tradier: TradierClient,
    *,
    run_id: str,
    symbol: str,
    symbol_id: int,
    day: date,
    now: datetime,
) -> SymbolIngest:
    """Replace today's partition with the complete 15-minute bars Tradier has so far."""
    result = SymbolIngest(symbol=symbol, days=[day], provider=tradier.provider)
    result.expected_requests = 1
    session = calendar.session(day)
    stats = RequestStats()
    fetch_id = ledger.start_fetch(
        conn,
        run_id=run_id,
        provider=tradier.provider,
        symbol=symbol,
        timeframe=Timeframe.M15.value,
        first=day,
        last=day,
        expected_cost=1,
    )
    conn.commit()
    try:
        raw = tradier.fetch_session_m15(symbol, session, now, stats)
    except ProviderError as exc:
        fail_window(conn, fetch_id, stats.requests, exc)
        raise
    finally:
        result.stats.add(stats)
    bars, report = clean_m15(raw, [session])
    result.note_cleaning(report)
    if report.wrong_interval:
        exc = wrong_interval_error(tradier.provider, report, stats.requests)
        fail_window(conn, fetch_id, stats.requests, exc)
        raise exc
    if report.rejected():
        log.warning(
            "%s today (%s): dropped %d bad bar(s) from %s: %s",
            symbol, day, report.rejected_total, tradier.provider,
            ", ".join(f"{rule}={n}" for rule, n in report.rejected().items()),
        )  # fmt: skip
    if not written_days(bars, [day]):
        # Nothing usable yet: keep whatever is stored for today (never lose bars).
        ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=0)
        conn.commit()
        result.empty_days.append(day)
        log.info("%s today (%s): no complete bars from Tradier yet", symbol, day)
        return result
    with conn.transaction():
        rows = bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.M15,
            days=[day],
            bars=bars,
            provider=tradier.provider,
            is_intraday=True,
        )
        ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=rows)
    conn.commit()
    result.bars_written = rows
    result.first_ts, result.last_ts = str(bars["ts"].min()), str(bars["ts"].max())
    log.info("%s today (%s): %d complete bars from Tradier", symbol, day, rows)
    return result

"""Crypto pairs' m15 bars per UTC day: request windows, provider fallback, the one write path.

A symbol's days are cut into contiguous windows of at most 34 UTC days (Polygon's 50,000 base
minutes; a pair can trade every minute). Each window goes to the run's first history provider;
when one is unavailable (not configured, retries exhausted, breaker open) that window and the
rest go to the next. A window's bars are cleaned on the 24/7 calendar (`core.clean` with whole
UTC days as sessions) and replace their day partitions through `storage.bars` in one
transaction with the provider's confirmation of the past days, so a killed run keeps every
window it committed. Today's UTC day is provisional (`is_intraday`) and never confirmed; once
the day is over and settled, the gap sensor fetches it again as final.

A pair that served no bar over its whole fetch is SYMBOL_NOT_FOUND, like a stock ticker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime

import polars as pl
import psycopg

from swiftbolt_pipeline.core import crypto_calendar
from swiftbolt_pipeline.core.clean import clean_m15
from swiftbolt_pipeline.core.errors import (
    AUTH_FAILED,
    PROVIDER_UNAVAILABLE,
    SYMBOL_NOT_FOUND,
    ProviderError,
)
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Provider, Timeframe
from swiftbolt_pipeline.ingest.store import SymbolIngest, wrong_interval_error
from swiftbolt_pipeline.providers.crypto import CryptoHistory
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import coverage, ledger

log = logging.getLogger(__name__)

ZONE = crypto_calendar.ZONE
# Opens a provider's crypto client for the caller's ExitStack; PROVIDER_UNAVAILABLE when the
# provider is not configured or serves no crypto.
OpenCrypto = Callable[[Provider], CryptoHistory]


def ingest_crypto(
    conn: psycopg.Connection,
    open_client: OpenCrypto,
    providers: Sequence[Provider],
    *,
    run_id: str,
    symbol: str,
    symbol_id: int,
    days: Sequence[date],
    now: datetime,
) -> SymbolIngest:
    """Fetch and store `symbol`'s m15 bars of the UTC `days`; the outcome (with `error` set on
    failure, never raised except for a rejected key)."""
    result = SymbolIngest(symbol=symbol, days=sorted(set(days)))
    today = crypto_calendar.utc_date(now)
    remaining = list(providers)
    for window in crypto_calendar.request_windows(result.days):
        while remaining:
            provider = remaining[0]
            try:
                _fetch_window(conn, open_client, provider, run_id, symbol_id, window, today, result)
                result.note_provider(provider)
                break
            except ProviderError as exc:
                if exc.code != PROVIDER_UNAVAILABLE:
                    if exc.code == AUTH_FAILED:
                        raise
                    result.error = exc
                    return result
                log.warning("%s: %s unavailable (%s)", symbol, provider, exc.message)
                result.unavailable.append(provider)
                remaining.pop(0)
                if not remaining:
                    result.error = exc
                    return result
    result.providers = result.providers or tuple(providers[:1])
    if result.received == 0 and result.days:
        result.error = ProviderError(
            SYMBOL_NOT_FOUND,
            f"no bars for {symbol} from {result.days[0]} to {result.days[-1]}: unknown or "
            "untraded pair",
            provider=",".join(result.providers),
            requests=result.stats.requests,
        )
    return result


def _fetch_window(
    conn: psycopg.Connection,
    open_client: OpenCrypto,
    provider: Provider,
    run_id: str,
    symbol_id: int,
    window: list[date],
    today: date,
    result: SymbolIngest,
) -> None:
    """One window from `provider`: fetched whole, then stored in one transaction."""
    stats = RequestStats()
    fetch_id: int | None = None
    try:
        client = open_client(provider)
        fetch_id = ledger.start_fetch(
            conn, run_id=run_id, provider=provider, symbol=result.symbol,
            timeframe=Timeframe.M15.value, first=window[0], last=window[-1], expected_cost=1,
        )  # fmt: skip
        conn.commit()
        try:
            pages = list(client.crypto_pages(result.symbol, window[0], window[-1], stats))
        finally:
            result.stats.add(stats)
        rows = _store(conn, provider, symbol_id, window, today, pages, result, stats)
    except ProviderError as exc:
        if fetch_id is not None:
            ledger.finish_fetch(
                conn, fetch_id, actual_cost=stats.requests, rows_written=0,
                error_code=exc.code, error_message=exc.message,
            )  # fmt: skip
            conn.commit()
        raise
    ledger.finish_fetch(conn, fetch_id, actual_cost=stats.requests, rows_written=rows)
    conn.commit()
    result.expected_cost += 1


def _store(
    conn: psycopg.Connection,
    provider: Provider,
    symbol_id: int,
    window: list[date],
    today: date,
    pages: list[pl.DataFrame],
    result: SymbolIngest,
    stats: RequestStats,
) -> int:
    """Clean the window's bars and replace its day partitions; confirm the past days."""
    served = pl.concat(pages) if pages else pl.DataFrame(schema=BAR_SCHEMA)
    result.received += served.height
    sessions = [crypto_calendar.day_session(d) for d in window]
    bars, report = clean_m15(served, sessions, zone=ZONE)
    if report.wrong_interval:
        raise wrong_interval_error(provider, report, stats.requests)
    result.note_cleaning(report)
    per_day = _bars_per_day(bars)
    past = [d for d in window if d < today]
    served_days = [d for d in past if per_day.get(d)]
    # Empty past days are confirmed only for a pair the provider is known to serve (stored
    # final bars, or some served now): an unknown pair answers every day empty, and that is
    # SYMBOL_NOT_FOUND, not days without trades.
    known = bool(per_day) or bar_store.has_final_bars(conn, symbol_id, Timeframe.M15)
    rows = 0
    with conn.transaction():
        for is_intraday, days in (
            (False, served_days),
            (True, [today] if per_day.get(today) else []),
        ):
            if not days:
                continue  # today's day keeps what it has until bars arrive
            rows += bar_store.replace_partitions(
                conn, symbol_id=symbol_id, timeframe=Timeframe.M15, days=days,
                bars=bars.filter(pl.col("ts").dt.date().is_in(days)), provider=provider,
                is_intraday=is_intraday, zone=ZONE,
            )  # fmt: skip
        coverage.confirm_sessions(
            conn, symbol_id=symbol_id, timeframe=Timeframe.M15,
            bars_per_day={d: per_day[d] for d in served_days}, provider=provider,
        )  # fmt: skip
        if known:
            # Keeps final bars a day already holds (never lose a bar on one empty answer).
            coverage.confirm_empty(
                conn, symbol_id=symbol_id, timeframe=Timeframe.M15,
                days=[d for d in past if not per_day.get(d)], provider=provider, zone=ZONE,
            )  # fmt: skip
    conn.commit()
    result.bars_written += rows
    result.empty_days.extend(d for d in past if not per_day.get(d))
    result.note_span(bars)
    log.info(
        "%s %s..%s: %d bars from %s in %d request(s)",
        result.symbol, window[0], window[-1], rows, provider, stats.requests,
    )  # fmt: skip
    return rows


def _bars_per_day(bars: pl.DataFrame) -> dict[date, int]:
    if bars.is_empty():
        return {}
    return dict(bars.select(pl.col("ts").dt.date())["ts"].value_counts().iter_rows())

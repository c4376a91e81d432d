"""Coverage of one symbol, optionally ensuring it: the single implementation behind
`swiftbolt coverage [--ensure]` and the HTTP API's `/v1/coverage` and `/v1/ensure-coverage`.

Ensuring adds the symbol to the watchlist (or widens its window); the `coverage_gap_sensor`
then requests the backfill of its gaps through Dagster. Idempotent: asking again while the
backfill is queued or running changes nothing, and the sensor leaves in-flight ranges alone.
"""

from __future__ import annotations

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.models import InvalidInput, Timeframe, is_crypto, parse_timeframes
from swiftbolt_pipeline.names import CRYPTO_BAR_ASSETS
from swiftbolt_pipeline.services.coverage import Coverage, coverage_report
from swiftbolt_pipeline.services.crypto_coverage import crypto_coverage_report
from swiftbolt_pipeline.storage import watchlist

DEFAULT_WINDOW_DAYS = 730


def parse_timeframe(raw: str) -> Timeframe:
    """Exactly one timeframe (`h1`, `M15`, ...), else INVALID_TIMEFRAME."""
    frames = parse_timeframes(raw)
    if len(frames) != 1:
        raise InvalidInput("INVALID_TIMEFRAME", "give exactly one timeframe")
    return frames[0]


def symbol_coverage(
    conn: psycopg.Connection,
    instance: dg.DagsterInstance | None,
    settings: Settings,
    *,
    symbol: str,
    timeframe: Timeframe,
    window_days: int | None = None,
    ensure: bool = False,
) -> Coverage:
    """The coverage report of `symbol` (already normalized) over its window: NYSE sessions,
    or UTC days for a crypto pair (`X:` ticker).

    `window_days` defaults to the watchlist row's, else 730. With `ensure`, the symbol is
    added to the watchlist (re-activated) or its window widened to cover `window_days`, never
    narrowed; its priority is kept; ensuring `m5` opts it in to 5-minute bars. Commits its own
    writes."""
    if is_crypto(symbol) and timeframe not in CRYPTO_BAR_ASSETS:
        raise InvalidInput(
            "SERIES_NOT_FOUND",
            f"crypto pairs have no {timeframe.value} bars (they have "
            f"{', '.join(CRYPTO_BAR_ASSETS)})",
        )
    current = watchlist.lookup(conn, symbol)
    window = window_days or (current.window_days if current else DEFAULT_WINDOW_DAYS)
    symbol_id = current.id if current else None
    if ensure:
        (added,) = watchlist.add(
            conn,
            [symbol],
            window_days=max(window, current.window_days if current and current.is_active else 0),
            priority=current.priority if current else 0,
            # Ensuring m5 coverage opts the symbol in to 5-minute bars (else it never gets any).
            m5=True if timeframe == Timeframe.M5 else None,
        )
        symbol_id = added.id
    report = crypto_coverage_report if is_crypto(symbol) else coverage_report
    return report(
        conn,
        instance,
        settings,
        symbol=symbol,
        symbol_id=symbol_id,
        timeframe=timeframe,
        window_days=window,
    )

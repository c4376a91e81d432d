"""The opt-in 5-minute bars (m5): which symbols get them and which of their sessions still
need a fetch. The gap rules are the m15 ones (`services.coverage.gap_requests`) on the m5
series: a past session is complete once the history provider's m5 answer is stored and final."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import psycopg

from swiftbolt_pipeline.config import PipelineClock
from swiftbolt_pipeline.core.gaps import find_gaps
from swiftbolt_pipeline.core.models import InvalidInput, Timeframe
from swiftbolt_pipeline.services.coverage import (
    GapRequest,
    Incomplete,
    InflightRange,
    expected_sessions,
    gap_requests,
    incomplete_watchlist,
)
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.watchlist import WatchedSymbol

OPT_IN_HINT = "swiftbolt watch add {} --m5 (or SWIFTBOLT_M5=1 for every watched stock)"


def opted_in(conn: psycopg.Connection, tickers: Sequence[str], *, everyone: bool) -> list[str]:
    """Those of `tickers` (stocks) that get m5: all of them with `everyone` (SWIFTBOLT_M5),
    else the ones whose `symbols` row is opted in. In the order given."""
    if everyone:
        return list(tickers)
    rows = {t: watchlist.lookup(conn, t) for t in tickers}
    return [t for t in tickers if (row := rows[t]) is not None and row.m5]


def require_opted_in(
    conn: psycopg.Connection, tickers: Sequence[str], *, everyone: bool
) -> list[str]:
    """`tickers` when every one gets m5, else INVALID_TIMEFRAME naming the others (asking for
    m5 of a symbol never opts it in by itself: m5 triples its rows)."""
    opted = set(opted_in(conn, tickers, everyone=everyone))
    missing = [t for t in tickers if t not in opted]
    if missing:
        raise InvalidInput(
            "INVALID_TIMEFRAME",
            f"m5 is opt-in and {', '.join(missing)} is not opted in: "
            + OPT_IN_HINT.format(" ".join(missing)),
        )
    return list(tickers)


def m5_gaps(
    watched: Sequence[WatchedSymbol],
    incomplete: Incomplete,
    settings: PipelineClock,
    excluded: Iterable[InflightRange],
) -> list[GapRequest]:
    """Contiguous incomplete m5 ranges of the opted-in `watched` symbols (every one a fetch:
    nothing is derived from m5), highest priority first; `incomplete` from `incomplete_m5`."""
    return gap_requests(
        watched,
        incomplete,
        settings,
        excluded,
        expected=lambda window_days: expected_sessions(settings, window_days, Timeframe.M5),
        gaps=find_gaps,
        raw=Timeframe.M5,
    )


def incomplete_m5(
    conn: psycopg.Connection, watched: Sequence[WatchedSymbol], settings: PipelineClock
) -> dict[int, dict[date, frozenset[Timeframe]]]:
    """The sessions of `watched` whose m5 bars are incomplete (m15's rules), in one query."""
    return incomplete_watchlist(conn, watched, settings, raw=Timeframe.M5, bucket_minutes={})

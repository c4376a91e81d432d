"""The opt-in 5-minute bars (m5) of a run's symbols x sessions: past sessions through the
history fetch path (`ingest.history`: the same request windows as m15, since the providers'
limits count base minutes, and the same provider fallback), today's session from the intraday
provider (Tradier's `5min` time & sales, provisional), all through the one write path."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime

import psycopg

from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.ingest.history import (
    HistoryTask,
    OpenClient,
    finish_history,
    history_round,
    start_history,
)
from swiftbolt_pipeline.ingest.store import SymbolIngest
from swiftbolt_pipeline.ingest.today import ingest_today
from swiftbolt_pipeline.providers.registry import TodayProvider

# The intraday provider's client, or None when none is configured (today then waits for the
# history provider, once the session is past).
OpenToday = Callable[[], TodayProvider | None]


def ingest_m5(
    conn: psycopg.Connection,
    open_history: OpenClient,
    open_today: OpenToday,
    providers: Sequence[Provider],
    *,
    plan: Mapping[str, Sequence[date]],
    ids: Mapping[str, int],
    today: date,
    now: datetime,
    run_id: str,
    extended_hours: bool = False,
) -> list[SymbolIngest]:
    """Every symbol's outcome (history, then today's session when the plan holds it); `error`
    set on a failed symbol, never raised, except AUTH_FAILED (a rejected key)."""
    tasks = [
        HistoryTask(symbol, ids[symbol], past)
        for symbol, days in plan.items()
        if (past := [d for d in days if d < today])
    ]
    results: list[SymbolIngest] = []
    if tasks:
        run = start_history(
            conn, providers, tasks, extended_hours=extended_hours, timeframe=Timeframe.M5
        )
        while run.next_provider() is not None:
            history_round(conn, run, open_history, run_id=run_id)
        results += finish_history(conn, run)
    todays = [symbol for symbol, days in plan.items() if today in days]
    if todays and (client := open_today()) is not None:
        results += [
            ingest_today(
                conn, client, run_id=run_id, symbol=symbol, symbol_id=ids[symbol], day=today,
                now=now, timeframe=Timeframe.M5,
            )
            for symbol in todays
        ]  # fmt: skip
    return results

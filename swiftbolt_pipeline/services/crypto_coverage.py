"""Coverage of crypto pairs on their 24/7 calendar: UTC days instead of NYSE sessions, the
same completeness rules (`core.completeness`), the same `coverage --json` shape and the same
in-flight bookkeeping as stocks (`services.coverage`). Shared by `swiftbolt coverage`, the
HTTP API and `crypto_coverage_gap_sensor`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import PipelineClock
from swiftbolt_pipeline.core import completeness, crypto_calendar
from swiftbolt_pipeline.core.completeness import NOTHING, SessionState
from swiftbolt_pipeline.core.gaps import Gap
from swiftbolt_pipeline.core.models import Timeframe, is_crypto
from swiftbolt_pipeline.services.coverage import (
    Coverage,
    GapRequest,
    InflightRange,
    gap_requests,
    inflight_ranges,
)
from swiftbolt_pipeline.storage.crypto_coverage import day_states
from swiftbolt_pipeline.storage.watchlist import WatchedSymbol

FIRST_BAR = timedelta(minutes=15)


def utc_today(settings: PipelineClock) -> date:
    return crypto_calendar.utc_date(settings.now())


def expected_days(settings: PipelineClock, window_days: int) -> list[date]:
    """UTC days of the window that can hold bars now: today's once its first 15-minute bar is
    complete (the history provider serves it; Tradier has no crypto)."""
    today = utc_today(settings)
    days = crypto_calendar.window_days(today, window_days, settings.history_start)
    if days and days[-1] == today and settings.now() < crypto_calendar.day_start(today) + FIRST_BAR:
        days.pop()
    return days


def find_day_gaps(expected: Sequence[date], present: Iterable[date]) -> list[Gap]:
    """The expected UTC days not in `present`, as runs of consecutive days."""
    have = set(present)
    missing = [d for d in expected if d not in have]
    return [Gap(r[0], r[-1], len(r)) for r in crypto_calendar.contiguous_runs(missing)]


@dataclass(frozen=True)
class CryptoCoverage(Coverage):
    """`Coverage` whose `sessions` are UTC days: a weekend or holiday is a day like any other."""

    @property
    def gaps(self) -> list[Gap]:
        return find_day_gaps(self.sessions, self.complete)


def _final(day: date, settings: PipelineClock) -> bool:
    return crypto_calendar.final_required(day, settings.now())


def _complete(state: SessionState, timeframe: Timeframe, *, final_required: bool) -> bool:
    """`completeness.complete` over crypto's own derived timeframes (d1 is derived too)."""
    if not completeness.raw_complete(state, final_required=final_required):
        return False
    derived = timeframe in crypto_calendar.DERIVED_TIMEFRAMES
    return not derived or completeness.derived_complete(state, timeframe)


def complete_days(
    states: dict[date, SessionState], timeframe: Timeframe, settings: PipelineClock
) -> frozenset[date]:
    return frozenset(
        day
        for day, state in states.items()
        if _complete(state, timeframe, final_required=_final(day, settings))
    )


def crypto_coverage_report(
    conn: psycopg.Connection,
    instance: dg.DagsterInstance | None,
    settings: PipelineClock,
    *,
    symbol: str,
    symbol_id: int | None,
    timeframe: Timeframe,
    window_days: int,
) -> CryptoCoverage:
    """Per UTC day of the window: complete for `timeframe`?"""
    days = expected_days(settings, window_days)
    complete: frozenset[date] = frozenset()
    bars = 0
    if symbol_id is not None and days:
        states = day_states(conn, [symbol_id], days)[symbol_id]
        complete = complete_days(states, timeframe, settings)
        bars = sum(
            (s.raw if timeframe == Timeframe.M15 else s.derived.get(timeframe, NOTHING)).bars
            for s in states.values()
        )
    running = queued = 0
    if instance is not None:
        ranges = [r for r in inflight_ranges(instance) if symbol in r.symbols]
        for day in days:
            covering = [r for r in ranges if r.covers(symbol, day)]
            if day in complete or not covering:
                continue
            if any(r.running for r in covering):
                running += 1
            else:
                queued += 1
    return CryptoCoverage(symbol, timeframe, window_days, days, complete, bars, running, queued)


def crypto_gaps_to_request(
    watched: Sequence[WatchedSymbol],
    states: dict[int, dict[date, SessionState]],
    settings: PipelineClock,
    excluded: Iterable[InflightRange],
) -> list[GapRequest]:
    """Per watched pair, its runs of consecutive incomplete UTC days minus what is in flight:
    a fetch where raw bars are missing or provisional past their day, a derive-only run where
    only h1/h4/d1 are; highest priority first. Stocks in `watched` are ignored. A few pairs:
    their days are judged here, from `states`, one by one."""
    incomplete = {
        symbol_id: {
            day: missing
            for day, state in days.items()
            if (
                missing := completeness.incomplete_timeframes(
                    state,
                    final_required=_final(day, settings),
                    derived=crypto_calendar.DERIVED_TIMEFRAMES,
                )
            )
        }
        for symbol_id, days in states.items()
    }
    return gap_requests(
        [s for s in watched if is_crypto(s.ticker)],
        incomplete,
        settings,
        excluded,
        expected=lambda window_days: expected_days(settings, window_days),
        gaps=find_day_gaps,
    )

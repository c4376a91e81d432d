"""Universe mode: every member's history over a run's sessions, and the run's summary.

The fetch is the watchlist's (`ingest.history`): members that need the same request window
share a request up to the provider's `max_symbols` (Alpaca: 50 per request, pages of 10,000
bars; Polygon: one symbol per request), each symbol's bars take the one write path and get
their own `job_runs` rows, and a symbol that fails (SYMBOL_NOT_FOUND, ...) never stops the
others. What differs is the bookkeeping around it: one outcome summary for the whole
universe, counts instead of symbol lists. Members' h1 and h4 are derived afterwards from their
stored m15 bars, only where out of date (`out_of_date`, `derive_members`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

import psycopg

from swiftbolt_pipeline.core.models import DERIVED_TIMEFRAMES, Provider, Timeframe
from swiftbolt_pipeline.ingest.derive import derive_many
from swiftbolt_pipeline.ingest.history import (
    HistoryTask,
    OpenClient,
    finish_history,
    history_round,
    start_history,
)
from swiftbolt_pipeline.ingest.store import SymbolIngest, record_symbol_outcomes
from swiftbolt_pipeline.storage import coverage, universes

# Failed tickers named in a summary; the rest are counted (a universe may have thousands).
SAMPLE = 10


# Batches fetched at once. One stream waits for every answer, for the 250-500 ms between
# pages and for each COPY in turn; several streams overlap those waits. Eight left the paid
# plan's 1,000 x 150 run a quarter idle on two cores (streams fetching in step, then writing
# in step); sixteen cut its m15 step by 9%. The shared token bucket still bounds the
# requests, so a free plan sees no more of them, only fewer idle gaps.
STREAMS = 16

Connect = Callable[[], AbstractContextManager[psycopg.Connection]]

T = TypeVar("T")
R = TypeVar("R")


def deal(items: Sequence[T], streams: int) -> list[list[T]]:
    """`items` dealt in turn to at most `streams` shares, none of them empty."""
    n = max(1, streams)
    return [list(items[k::n]) for k in range(min(n, len(items)))]


def stream_shares(tickers: Sequence[str], batch_size: int, streams: int) -> list[list[str]]:
    """The members (in ticker order) each stream fetches, in batches of `batch_size`. Up to
    `streams` batches: one batch per stream, as one stream would cut them. More: contiguous
    shares as equal as members allow, so every stream works until the end instead of the
    last batches running alone; each share's last batch may be partial, so this costs at most
    one request per stream over whole batches."""
    n = len(tickers)
    if n <= batch_size * streams:
        return [list(tickers[i : i + batch_size]) for i in range(0, n, batch_size)]
    base, extra = divmod(n, streams)
    bounds = [k * base + min(k, extra) for k in range(streams + 1)]
    return [list(tickers[bounds[k] : bounds[k + 1]]) for k in range(streams)]


def in_streams(shares: list[list[T]], work: Callable[[list[T]], R], name: str) -> list[R]:
    """`work` on every share, each in its own thread (a single share runs inline); the
    results in share order. The first failure is raised once every share has finished."""
    if len(shares) <= 1:
        return [work(share) for share in shares]
    with ThreadPoolExecutor(max_workers=len(shares), thread_name_prefix=name) as pool:
        return list(pool.map(work, shares))


def fetch_members(
    connect: Connect,
    providers: Sequence[Provider],
    members: dict[str, int],
    days: Sequence[date],
    open_client: OpenClient,
    *,
    run_id: str,
    extended_hours: bool,
    batch_size: int,
    streams: int = STREAMS,
) -> list[SymbolIngest]:
    """Every member's `days` through the providers in order (fallback on an outage), in
    `streams` threads, each with its own connection and clients, each fetching its share of
    the members (`stream_shares`) in the provider's batches of `batch_size`.
    Raises AUTH_FAILED: a rejected key fails every member alike."""
    shares = stream_shares(list(members), batch_size, streams)

    def stream(share: list[str]) -> list[SymbolIngest]:
        tasks = [HistoryTask(symbol, members[symbol], days) for symbol in share]
        with connect() as conn:
            run = start_history(
                conn, providers, tasks, extended_hours=extended_hours,
                detail_log_level=logging.DEBUG,  # counts go to the metadata instead
            )  # fmt: skip
            while run.next_provider() is not None:
                history_round(conn, run, open_client, run_id=run_id)
            return finish_history(conn, run)

    return [r for results in in_streams(shares, stream, "universe") for r in results]


def record_outcomes(
    conn: psycopg.Connection,
    results: Sequence[SymbolIngest],
    members: dict[str, dict[str, int]],
    *,
    run_id: str,
    now: datetime,
) -> int:
    """Each member's outcome on its membership rows (`universe_members.last_*`, per universe
    in `members`) and once on its `symbols` row as a watchlist fetch records it (clears or
    notes the failure; a watched member answering SYMBOL_NOT_FOUND again and again is parked).
    Returns the number of members parked now."""
    ids = {symbol: i for tickers in members.values() for symbol, i in tickers.items()}
    with conn.transaction():
        parked = record_symbol_outcomes(conn, results, ids, now)
        days = [d for r in results for d in r.days]
        for name, tickers in members.items():
            universes.record_outcomes(
                conn,
                name,
                [
                    universes.MemberOutcome(
                        tickers[r.symbol], r.error.code if r.error else None,
                        r.error.message if r.error else None,
                    )
                    for r in results
                    if r.symbol in tickers
                ],
                run_id=run_id, first=min(days), last=max(days), now=now,
            )  # fmt: skip
    conn.commit()
    return len(parked)


@dataclass(frozen=True)
class FetchSummary:
    """A universe run's fetch in counts."""

    members: int
    failed: int
    failures_by_code: dict[str, int]
    failed_sample: list[str]
    rows: int
    requests: int
    expected_cost: int
    retries: int
    symbol_sessions: int
    resumed_sessions: int
    empty_sessions: int
    rejected_bars: int
    providers: list[Provider]
    fallback_used: bool
    first_bar: str | None
    last_bar: str | None


def summarize(results: Sequence[SymbolIngest], order: Sequence[Provider]) -> FetchSummary:
    failed = [r for r in results if r.error]
    used = {p for r in results for p in r.providers if r.error is None}
    return FetchSummary(
        members=len(results),
        failed=len(failed),
        failures_by_code=dict(Counter(r.error.code for r in failed if r.error)),
        failed_sample=[r.symbol for r in failed[:SAMPLE]],
        rows=sum(r.bars_written for r in results),
        requests=sum(r.stats.requests for r in results),
        expected_cost=sum(r.expected_cost for r in results),
        retries=sum(r.stats.retries for r in results),
        symbol_sessions=sum(len(r.days) for r in results),
        resumed_sessions=sum(r.resumed_days for r in results),
        empty_sessions=sum(len(r.empty_days) for r in results),
        rejected_bars=sum(r.rejected_total for r in results),
        providers=[p for p in order if p in used] + sorted(used - set(order)),
        fallback_used=any(r.fallback_used for r in results),
        first_bar=min((r.first_ts for r in results if r.first_ts), default=None),
        last_bar=max((r.last_ts for r in results if r.last_ts), default=None),
    )


def out_of_date(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> dict[int, list[date]]:
    """Per member (symbol id), its `days` (sorted sessions) whose h1 or h4 bars do not match
    its stored m15 bars: never derived, or the m15 bars written again since (the gap sensor's
    rule, `completeness.derived_complete`). Members with none are left out."""
    found = coverage.incomplete_sessions(conn, symbol_ids, days, final=lambda _: False)
    derived = set(DERIVED_TIMEFRAMES)
    stale = {i: [d for d, tfs in per_day.items() if tfs & derived] for i, per_day in found.items()}
    return {i: days for i, days in stale.items() if days}


def rows_in_streams(
    connect: Connect,
    items: Sequence[T],
    work: Callable[[psycopg.Connection, T], Mapping[Timeframe, int]],
    timeframes: Sequence[Timeframe],
    *,
    streams: int,
    name: str,
) -> dict[Timeframe, int]:
    """`work` on every item (a member), items dealt to `streams` threads, each with its own
    connection: per-member work waits on PostgreSQL about as long as it computes, so several
    keep both the server and the client busy. Rows written per timeframe, summed."""

    def stream(share: list[T]) -> Counter[Timeframe]:
        written: Counter[Timeframe] = Counter(dict.fromkeys(timeframes, 0))
        with connect() as conn:
            for item in share:
                written.update(work(conn, item))
        return written

    total: Counter[Timeframe] = Counter(dict.fromkeys(timeframes, 0))
    for written in in_streams(deal(list(items), streams), stream, name):
        total.update(written)
    return dict(total)


def derive_members(
    connect: Connect, stale: dict[int, list[date]], *, streams: int = STREAMS
) -> dict[Timeframe, int]:
    """h1 and h4 of each member (symbol id) over its `stale` days from its stored m15 bars
    (one read per member for both), members in `streams` threads (`rows_in_streams`). Rows
    written per timeframe."""

    def derive(conn: psycopg.Connection, member: tuple[int, list[date]]) -> dict[Timeframe, int]:
        symbol_id, days = member
        return derive_many(conn, symbol_id=symbol_id, days=days, timeframes=DERIVED_TIMEFRAMES)

    return rows_in_streams(
        connect, list(stale.items()), derive, DERIVED_TIMEFRAMES, streams=streams, name="derive"
    )

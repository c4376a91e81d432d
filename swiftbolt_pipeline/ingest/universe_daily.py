"""Universe d1: every member's official daily bar over a run's sessions, with the fewest
requests the run's providers allow.

Two ways to ask, costed for the run's members x sessions before anything is sent:

- **grouped** (Polygon): `/v2/aggs/grouped/...` answers every ticker's daily bar of one
  session, so the run costs one request per session, whatever the number of members;
- **per symbol**: the watchlist's daily fetch (`ingest.daily.fetch_daily`), one request per
  `max_symbols` members over the whole span: Alpaca 50 symbols per request plus a page per
  10,000 bars, Polygon one symbol per request.

`plan_sources` orders every way the run's providers offer by its estimated requests (ties
keep the providers' configured order, grouped first); the cheapest serves, and when a
provider is unavailable (not configured, breaker open, retries exhausted) the next way takes
the members and sessions still to do. Bars take the one write path (`ingest.daily.store_d1`):
each member's sessions are replaced and confirmed in one transaction.

Grouped answers are stored GROUPED_CHUNK sessions at a time (a killed run loses at most one
chunk). Within a chunk, a member missing from a day's answer is confirmed as answered without
a bar, as the watchlist's daily does for a day its symbol has no bar; a member with no bar on
any answered day of the chunk gets nothing stored for it, and one with no bar in the whole
run is SYMBOL_NOT_FOUND (an unknown ticker never collects confirmed-empty sessions). A
session's answer without any bar (the provider has nothing for that day yet) confirms
nothing.

Each member that got bars then has its w1 and mo1 rolled up again from its stored d1 bars
(`roll_up_members`), over every week and month holding one of the run's sessions, as the
watchlist's `w1_bars` and `mo1_bars` do."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl
import psycopg

from swiftbolt_pipeline.core.daily import ROLLUP_TIMEFRAMES
from swiftbolt_pipeline.core.errors import (
    AUTH_FAILED,
    PROVIDER_UNAVAILABLE,
    SYMBOL_NOT_FOUND,
    ProviderError,
)
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.ingest.daily import (
    DailyIngest,
    DailyTask,
    OpenDaily,
    fetch_daily,
    roll_up,
    store_d1,
)
from swiftbolt_pipeline.ingest.universe import STREAMS, Connect, rows_in_streams
from swiftbolt_pipeline.providers import alpaca, polygon
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.registry import (
    GroupedDailyProvider,
    history_batch_size,
    serves_grouped_daily,
)
from swiftbolt_pipeline.storage import ledger

OpenGrouped = Callable[[Provider], GroupedDailyProvider]

GROUPED_CHUNK = 20
# Daily bars one per-symbol request returns before paging (its `limit`).
_PAGE_BARS = {Provider.POLYGON: polygon.MAX_LIMIT, Provider.ALPACA: alpaca.MAX_LIMIT}
# The ledger's `symbol` of a grouped request: it answers for every ticker.
GROUPED_SYMBOL = "*"
SAMPLE = 10


@dataclass(frozen=True)
class DailySource:
    """One way to fetch a run's daily bars and what it would cost."""

    provider: Provider
    grouped: bool
    requests: int

    def __str__(self) -> str:
        return f"{self.provider.value} {'grouped' if self.grouped else 'per-symbol'}"


def estimate_requests(provider: Provider, *, grouped: bool, members: int, sessions: int) -> int:
    """Requests one way needs for `members` x `sessions` (every member trading every day)."""
    if members == 0 or sessions == 0:
        return 0
    if grouped:
        return sessions
    size = history_batch_size(provider)
    full, rest = divmod(members, size)
    page = _PAGE_BARS.get(provider, size * sessions)
    return full * math.ceil(size * sessions / page) + (
        math.ceil(rest * sessions / page) if rest else 0
    )


def plan_sources(providers: Sequence[Provider], members: int, sessions: int) -> list[DailySource]:
    """Every way `providers` offer, cheapest first (stable: configured order, grouped first)."""
    ways = [
        DailySource(p, grouped, estimate_requests(p, grouped=grouped, members=members,
                                                  sessions=sessions))
        for p in providers
        for grouped in ((True, False) if serves_grouped_daily(p) else (False,))
    ]  # fmt: skip
    return sorted(ways, key=lambda way: way.requests)


@dataclass
class UniverseDaily:
    """A run's universe d1 fetch: per-member outcomes and what it cost."""

    results: list[DailyIngest]
    plan: list[DailySource]
    used: list[DailySource] = field(default_factory=list)
    stats: RequestStats = field(default_factory=RequestStats)
    empty_answers: int = 0  # grouped answers without any bar (nothing confirmed)


def fetch_universe_daily(
    conn: psycopg.Connection,
    providers: Sequence[Provider],
    members: dict[str, int],
    days: Sequence[date],
    open_daily: OpenDaily,
    open_grouped: OpenGrouped,
    *,
    run_id: str,
) -> UniverseDaily:
    """Fetch and store every member's d1 bars of `days`. Raises AUTH_FAILED."""
    tasks = [DailyTask(symbol, symbol_id, sorted(days)) for symbol, symbol_id in members.items()]
    results = {t.symbol: DailyIngest(t.symbol, list(t.days)) for t in tasks}
    out = UniverseDaily(
        [results[t.symbol] for t in tasks], plan_sources(providers, len(tasks), len(days))
    )
    if not out.plan:
        raise ValueError("no history provider to fetch daily bars from")
    waiting: list[DailyTask] = [t for t in tasks if t.days]
    unavailable: ProviderError | None = None
    for source in out.plan:
        if not waiting:
            break
        if source.grouped:
            step = _Grouped(conn, source.provider, results, out, run_id)
            waiting, unavailable = step.run(open_grouped, waiting)
        else:
            waiting, unavailable = _per_symbol(conn, source, open_daily, waiting, out, run_id)
    for task in waiting:
        results[task.symbol].error = unavailable
    for result in out.results:
        if result.error is None and result.provider is None and result.days:
            result.error = ProviderError(
                SYMBOL_NOT_FOUND, f"no daily bars for {result.symbol} {result.days[0]}.."
                f"{result.days[-1]}", provider=(out.used or out.plan)[-1].provider,
            )  # fmt: skip
    return out


def _per_symbol(
    conn: psycopg.Connection,
    source: DailySource,
    open_daily: OpenDaily,
    tasks: list[DailyTask],
    out: UniverseDaily,
    run_id: str,
) -> tuple[list[DailyTask], ProviderError | None]:
    """The watchlist's daily fetch on one provider; returns the tasks it could not serve."""
    by_symbol = {r.symbol: r for r in out.results}
    left: list[DailyTask] = []
    unavailable: ProviderError | None = None
    fetched = fetch_daily(conn, [source.provider], open_daily, tasks, run_id=run_id)
    for task, result in zip(tasks, fetched, strict=True):
        out.stats.add(result.stats)
        if result.error is not None and result.error.code == PROVIDER_UNAVAILABLE:
            left.append(task)
            unavailable = result.error
            continue
        merged = by_symbol[task.symbol]
        merged.bars_written += result.bars_written
        merged.provider = result.provider or merged.provider
        merged.error = result.error or merged.error
    if len(left) < len(tasks):
        out.used.append(source)
    return left, unavailable


class _Grouped:
    """Grouped daily on one provider, GROUPED_CHUNK sessions per store."""

    def __init__(
        self,
        conn: psycopg.Connection,
        provider: Provider,
        results: dict[str, DailyIngest],
        out: UniverseDaily,
        run_id: str,
    ) -> None:
        self.conn, self.provider, self.results, self.out = conn, provider, results, out
        self.run_id = run_id
        self.stored = False  # a member's bars stored from a grouped answer

    def run(
        self, open_grouped: OpenGrouped, tasks: list[DailyTask]
    ) -> tuple[list[DailyTask], ProviderError | None]:
        """Every session of `tasks`; returns the tasks (days left) for the next way."""
        try:
            client = open_grouped(self.provider)
        except ProviderError as exc:
            if exc.code != PROVIDER_UNAVAILABLE:
                raise
            return tasks, exc
        days = sorted({d for t in tasks for d in t.days})
        for start in range(0, len(days), GROUPED_CHUNK):
            chunk = days[start : start + GROUPED_CHUNK]
            stopped = self._chunk(client, tasks, chunk)
            used = DailySource(self.provider, True, len(days))
            if self.stored and used not in self.out.used:
                self.out.used.append(used)
            if stopped is not None:
                rest = set(days[days.index(stopped[0]) :])
                left = [DailyTask(t.symbol, t.symbol_id, [d for d in t.days if d in rest])
                        for t in tasks]  # fmt: skip
                return [t for t in left if t.days], stopped[1]
        return [], None

    def _chunk(
        self, client: GroupedDailyProvider, tasks: list[DailyTask], chunk: list[date]
    ) -> tuple[date, ProviderError] | None:
        """Fetch `chunk`'s answers, store them per member; (day, error) when the provider
        became unavailable on `day` (earlier days of the chunk are stored)."""
        members = {t.symbol for t in tasks}
        answers: dict[date, pl.DataFrame] = {}
        pending: dict[date, tuple[int, int]] = {}  # day -> (ledger row, its requests)
        stopped: tuple[date, ProviderError] | None = None
        for day in chunk:
            stats = RequestStats()
            fetch_id = ledger.start_fetch(
                self.conn, run_id=self.run_id, provider=self.provider, symbol=GROUPED_SYMBOL,
                timeframe=Timeframe.D1.value, first=day, last=day, expected_cost=1,
            )  # fmt: skip
            self.conn.commit()
            try:
                answer = client.grouped_daily(day, stats)
            except ProviderError as exc:
                self.out.stats.add(stats)
                ledger.finish_fetch(
                    self.conn, fetch_id, actual_cost=stats.requests, rows_written=0,
                    error_code=exc.code, error_message=exc.message,
                )  # fmt: skip
                self.conn.commit()
                if exc.code == AUTH_FAILED:
                    raise
                if exc.code == PROVIDER_UNAVAILABLE:
                    stopped = (day, exc)
                    break
                for task in tasks:
                    if day in task.days:
                        self.results[task.symbol].error = exc
                continue
            self.out.stats.add(stats)
            if answer.is_empty():
                self.out.empty_answers += 1
                ledger.finish_fetch(self.conn, fetch_id, actual_cost=stats.requests,
                                    rows_written=0)  # fmt: skip
                self.conn.commit()
                continue
            answers[day] = answer.filter(pl.col("symbol").is_in(list(members)))
            pending[day] = (fetch_id, stats.requests)
        if answers:
            self._store(tasks, answers)
        for day, (fetch_id, cost) in pending.items():
            ledger.finish_fetch(self.conn, fetch_id, actual_cost=cost,
                                rows_written=answers[day].height)  # fmt: skip
        self.conn.commit()
        return stopped

    def _store(self, tasks: list[DailyTask], answers: dict[date, pl.DataFrame]) -> None:
        """Each member's answered days of the chunk in one transaction: its bars, and the
        days it has none confirmed empty, unless it has no bar in the chunk at all."""
        bars = pl.concat(list(answers.values()))
        by_symbol = bars.partition_by("symbol", as_dict=True, include_key=False)
        for task in tasks:
            mine = by_symbol.get((task.symbol,))
            days = [d for d in task.days if d in answers]
            if mine is None or not days:
                continue
            result = self.results[task.symbol]
            result.bars_written += store_d1(self.conn, task.symbol_id, days, mine, self.provider)
            result.provider = self.provider
            self.stored = True


def roll_up_members(
    connect: Connect, symbol_ids: Sequence[int], days: Sequence[date], *, streams: int = STREAMS
) -> dict[Timeframe, int]:
    """w1 and mo1 of each member (symbol id) over every period holding one of `days`, rolled
    up from its stored d1 bars and replaced, members in `streams` threads
    (`rows_in_streams`). Rows written per timeframe."""

    def roll(conn: psycopg.Connection, symbol_id: int) -> dict[Timeframe, int]:
        return {
            timeframe: roll_up(conn, symbol_id=symbol_id, days=days, timeframe=timeframe)
            for timeframe in ROLLUP_TIMEFRAMES
        }

    members = symbol_ids if days else []  # no period to roll up: no connection either
    return rows_in_streams(
        connect, members, roll, ROLLUP_TIMEFRAMES, streams=streams, name="roll-up"
    )


@dataclass(frozen=True)
class DailySummary:
    """A universe d1 run in counts."""

    members: int
    failed: int
    failures_by_code: dict[str, int]
    failed_sample: list[str]
    rows: int
    requests: int
    planned_requests: int
    retries: int
    source: str
    empty_answers: int


def summarize(run: UniverseDaily) -> DailySummary:
    failed = [r for r in run.results if r.error]
    return DailySummary(
        members=len(run.results),
        failed=len(failed),
        failures_by_code=dict(Counter(r.error.code for r in failed if r.error)),
        failed_sample=[r.symbol for r in failed[:SAMPLE]],
        rows=sum(r.bars_written for r in run.results),
        requests=run.stats.requests,
        planned_requests=run.plan[0].requests if run.plan else 0,
        retries=run.stats.retries,
        source=", ".join(dict.fromkeys(str(s) for s in run.used)) or "-",
        empty_answers=run.empty_answers,
    )

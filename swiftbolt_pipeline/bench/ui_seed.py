"""The watchlist part of the state the UI bench loads into a scratch Dagster instance: symbols
registered as `symbols` partitions, with a fragmented mix of materialized, failed and missing
partitions of the session assets (symbol x session, `SeedPlan`) and of the daily assets
(symbol x year, `DailyPlan`): the partitions page's worst case, consecutive sessions holding
different sets of symbols. The universes are `ui_universe`'s.

A plan says which cell is in which state; `seed` writes it:

- symbols: `instance.add_dynamic_partitions`, as the watchlist sensor does;
- failed: one FAILURE run per failing symbol (tagged with its partition range, as the gap
  sensor's runs are), and one ASSET_MATERIALIZATION_PLANNED event per partition and asset,
  as Dagster logs them when such a run starts. Dagster shows a partition failed when its latest
  planned event belongs to a failed run and no materialization followed it;
- materialized: one ASSET_MATERIALIZATION event per partition and asset. Dagster's own
  batch path (`store_event_batch`, one multi-row INSERT) writes about 3,000 a second here,
  which is too slow for millions, so the rows are COPYed into `event_logs` instead: the same
  columns `store_event_batch` fills, the `event` column from a template that Dagster's
  serializer produced, checked byte-for-byte against `serialize_value` on sample events. The
  last materialization of each asset goes through `store_event`, which updates the asset's
  record (last materialization, storage id) as a real write does."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import cached_property

import dagster as dg
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._serdes import serialize_value

from swiftbolt_pipeline.defs.jobs import BARS_JOB, DAILY_JOB
from swiftbolt_pipeline.names import (
    DAILY_ASSETS,
    SESSION_ASSETS,
    SYMBOLS_PARTITIONS,
    SYMBOLS_TAG,
    TRIGGER_TAG,
    partition_key,
    range_tags,
    year_partition_key,
    year_range_tags,
)

RUNLESS_JOB = "__ASSET_JOB"  # the job name Dagster gives reported (runless) materializations
COPY_CHUNK = 50_000  # rows per COPY statement
SPREAD_S = 86_400.0
# Placeholders Dagster's serializer writes verbatim into the template (no JSON escaping).
_PARTITION = "SEEDPARTITIONPLACEHOLDER"
_TIMESTAMP = 1234567.125


def symbol_name(k: int) -> str:
    """The k-th watched symbol of the bench (`U00000`, ...)."""
    return f"U{k:05d}"


class Cell(StrEnum):
    MATERIALIZED = "materialized"
    FAILED = "failed"
    MISSING = "missing"


@dataclass(frozen=True)
class SeedPlan:
    """Which state each symbol x session is in, for `symbols` symbols over `sessions`.

    Only the last `backfilled` sessions hold data (every session up to FULL_HISTORY_SYMBOLS
    symbols, proportionally fewer beyond, so the event log stays about as large at any size
    and seeding fits the bench's time); earlier sessions are missing for every symbol. In that
    window, for symbol k (k = 0..symbols-1, named `U00000`...) and session index d:
    - k % 10 == 9: added to the watchlist but never backfilled: missing;
    - k % 10 == 8: listed in the middle of the window: missing before it;
    - otherwise materialized, except scattered one-session holes where
      (7 * d + k) % HOLE_EVERY == 0, staggered so neighbouring symbols miss different days;
    - k % FAIL_EVERY == 3 (and not a never-backfilled symbol): the last FAILED_SESSIONS
      sessions belong to one failed run (failed, whatever they were before)."""

    symbols: int
    sessions: tuple[date, ...]

    FULL_HISTORY_SYMBOLS = 500
    HOLE_EVERY = 11
    FAIL_EVERY = 20
    FAILED_SESSIONS = 10

    @property
    def backfilled(self) -> int:
        """Sessions (the latest) that hold data."""
        share = min(1.0, self.FULL_HISTORY_SYMBOLS / max(1, self.symbols))
        return max(self.FAILED_SESSIONS, round(len(self.sessions) * share))

    def symbol(self, k: int) -> str:
        return symbol_name(k)

    @property
    def names(self) -> list[str]:
        return [self.symbol(k) for k in range(self.symbols)]

    def fails(self, k: int) -> bool:
        return k % self.FAIL_EVERY == 3 and k % 10 != 9

    def failed_days(self, k: int) -> tuple[date, ...]:
        return self.sessions[-self.FAILED_SESSIONS :] if self.fails(k) else ()

    def cell(self, k: int, d: int) -> Cell:
        first = len(self.sessions) - self.backfilled
        if k % 10 == 9 or d < first:
            return Cell.MISSING
        if self.fails(k) and d >= len(self.sessions) - self.FAILED_SESSIONS:
            return Cell.FAILED
        if k % 10 == 8 and d < first + self.backfilled // 2:
            return Cell.MISSING
        if (7 * d + k) % self.HOLE_EVERY == 0:
            return Cell.MISSING
        return Cell.MATERIALIZED

    @cached_property
    def counts(self) -> Counter[Cell]:
        """Cells per state, per bar asset (every bar asset gets the same plan)."""
        return Counter(
            self.cell(k, d) for k in range(self.symbols) for d in range(len(self.sessions))
        )

    def last_materialized_key(self) -> str:
        """The key of the last materialization `seed` writes (the asset's latest)."""
        for k in reversed(range(self.symbols)):
            for d in reversed(range(len(self.sessions))):
                if self.cell(k, d) is Cell.MATERIALIZED:
                    return str(partition_key(self.symbol(k), self.sessions[d]))
        raise ValueError("nothing materialized")

    def failed_runs(self) -> Iterator[FailedRun]:
        for k in range(self.symbols):
            days = self.failed_days(k)
            if days:
                symbol = self.symbol(k)
                yield FailedRun(
                    symbol,
                    [str(partition_key(symbol, day)) for day in days],
                    range_tags(symbol, symbol, days[0], days[-1]),
                )

    def materialized_keys(self) -> Iterator[str]:
        """In write order: symbol by symbol, each symbol's sessions in order."""
        if not self.sessions:
            return
        # Dagster's key format (day|symbol), checked once: building a MultiPartitionKey per
        # key costs more than the rest of the seeding.
        days = [day.isoformat() for day in self.sessions]
        if str(partition_key(self.symbol(0), self.sessions[0])) != f"{days[0]}|{self.symbol(0)}":
            raise RuntimeError("Dagster's multi-partition key format changed")
        for k in range(self.symbols):
            symbol = self.symbol(k)
            for d, day in enumerate(days):
                if self.cell(k, d) is Cell.MATERIALIZED:
                    yield f"{day}|{symbol}"


@dataclass(frozen=True)
class FailedRun:
    """One failed run of one symbol: the partitions it planned and never materialized."""

    symbol: str
    keys: list[str]
    tags: dict[str, str]


@dataclass(frozen=True)
class DailyPlan:
    """The daily assets' cells (symbol x calendar year), for the same symbols as a `SeedPlan`:
    never-backfilled symbols (k % 10 == 9) miss every year; symbol k misses year index y
    where (k + 3 * y) % HOLE_EVERY == 0 (a gap the daily sensor has yet to fill); failing
    symbols (k % FAIL_EVERY == 3) have a failed run over the current year."""

    symbols: int
    years: tuple[int, ...]

    HOLE_EVERY = 7
    FAIL_EVERY = 20

    def symbol(self, k: int) -> str:
        return symbol_name(k)

    def cell(self, k: int, y: int) -> Cell:
        if k % 10 == 9:
            return Cell.MISSING
        if k % self.FAIL_EVERY == 3 and y == len(self.years) - 1:
            return Cell.FAILED
        if (k + 3 * y) % self.HOLE_EVERY == 0:
            return Cell.MISSING
        return Cell.MATERIALIZED

    @cached_property
    def counts(self) -> Counter[Cell]:
        return Counter(self.cell(k, y) for k in range(self.symbols) for y in range(len(self.years)))

    def failed_runs(self) -> Iterator[FailedRun]:
        last = len(self.years) - 1
        for k in range(self.symbols):
            if self.cell(k, last) is Cell.FAILED:
                symbol, year = self.symbol(k), self.years[last]
                yield FailedRun(
                    symbol,
                    [str(year_partition_key(symbol, year))],
                    year_range_tags(symbol, symbol, year, year),
                )

    def materialized_keys(self) -> Iterator[str]:
        if not self.years:
            return
        if str(year_partition_key("A", self.years[0])) != f"A|{self.years[0]}":
            raise RuntimeError("Dagster's multi-partition key format changed")
        for k in range(self.symbols):
            symbol = self.symbol(k)
            for y, year in enumerate(self.years):
                if self.cell(k, y) is Cell.MATERIALIZED:
                    yield f"{symbol}|{year}"


@dataclass(frozen=True)
class SeedResult:
    counts: dict[str, int]  # per session asset: materialized / failed / missing partitions
    daily_counts: dict[str, int]  # per daily asset
    failed_runs: int
    events: int  # event_logs rows written
    seconds: dict[str, float]  # per phase


def _materialization(asset: str, key: str, timestamp: float) -> EventLogEntry:
    """A reported (runless) materialization, as `report_runless_asset_event` builds one, with
    metadata like the pipeline's (rows, provider)."""
    materialization = dg.AssetMaterialization(
        asset_key=asset, partition=key, metadata={"rows": 26, "provider": "polygon"}
    )
    return EventLogEntry(
        error_info=None,
        level="debug",
        user_message="",
        run_id="",
        timestamp=timestamp,
        dagster_event=DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=RUNLESS_JOB,
            event_specific_data=StepMaterializationData(materialization),
        ),
    )


def _planned(asset: str, key: str, run_id: str, timestamp: float, job: str) -> EventLogEntry:
    event = DagsterEvent.build_asset_materialization_planned_event(
        job, asset, AssetMaterializationPlannedData(dg.AssetKey(asset), partition=key)
    )
    return EventLogEntry(
        error_info=None,
        level="debug",
        user_message="",
        run_id=run_id,
        timestamp=timestamp,
        dagster_event=event,
    )


class MaterializationRows:
    """`event` column values from one template per asset, equal to `serialize_value`'s."""

    def __init__(self, asset: str) -> None:
        self.asset = asset
        template = serialize_value(_materialization(asset, _PARTITION, _TIMESTAMP))
        head, rest = template.split(_PARTITION)
        middle, tail = rest.split(repr(_TIMESTAMP))
        self._parts = (head, middle, tail)
        for key, timestamp in (("2025-01-02|AAPL", 1796032472.3174078), ("x|Y", 1.5)):
            if self.event(key, timestamp) != serialize_value(
                _materialization(asset, key, timestamp)
            ):
                raise RuntimeError("Dagster's event serialization changed: update the template")

    def event(self, key: str, timestamp: float) -> str:
        if json.dumps(key) != f'"{key}"':
            raise ValueError(f"partition key {key!r} needs JSON escaping, which the template skips")
        head, middle, tail = self._parts
        return f"{head}{key}{middle}{timestamp!r}{tail}"


Row = tuple[str | None, ...]


def copy_events(instance: dg.DagsterInstance, rows: Iterator[Row]) -> int:
    """COPY (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition) rows
    into Dagster's event_logs, on Dagster's own connection (its schema)."""
    engine = instance.event_log_storage._engine  # type: ignore[attr-defined]
    written = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        while True:
            buffer = io.StringIO()
            n = 0
            for row in rows:
                buffer.write("\t".join(_copy_text(v) for v in row) + "\n")
                n += 1
                if n == COPY_CHUNK:
                    break
            if not n:
                break
            buffer.seek(0)
            cursor.copy_expert(
                "COPY event_logs (run_id, event, dagster_event_type, timestamp, step_key, "
                "asset_key, partition) FROM STDIN",
                buffer,
            )
            written += n
        cursor.execute("ANALYZE event_logs")
        raw.commit()
    finally:
        raw.close()
    return written


def _copy_text(value: str | None) -> str:
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None).isoformat()


Plan = SeedPlan | DailyPlan


def seed(
    instance: dg.DagsterInstance,
    plan: SeedPlan,
    daily: DailyPlan | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> SeedResult:
    """`plan` into the session assets and `daily` (if any) into the daily assets."""
    grids: list[tuple[Plan, tuple[str, ...], str]] = [(plan, SESSION_ASSETS, BARS_JOB)]
    if daily is not None:
        grids.append((daily, DAILY_ASSETS, DAILY_JOB))
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    instance.add_dynamic_partitions(SYMBOLS_PARTITIONS, plan.names)
    seconds["symbols"] = time.perf_counter() - started

    # Materializations first (older), then the failed runs' planned events (newer).
    started = time.perf_counter()
    # Event times spread over the day before the seeding, in write order.
    clock = time.time() - SPREAD_S
    cells = sum(
        len(assets) * (g.counts[Cell.MATERIALIZED] + g.counts[Cell.FAILED])
        for g, assets, _ in grids
    )
    step = SPREAD_S / (cells + 1)
    held_back: list[tuple[str, str]] = []  # (asset, partition) written through Dagster

    def materializations() -> Iterator[Row]:
        nonlocal clock
        for grid, assets, _ in grids:
            for asset in assets:
                template = MaterializationRows(asset)
                asset_key = dg.AssetKey(asset).to_string()
                keys = grid.materialized_keys()
                previous = next(keys, None)
                if previous is None:
                    continue
                for key in keys:
                    clock += step
                    yield ("", template.event(previous, clock), "ASSET_MATERIALIZATION",
                           _utc(clock), None, asset_key, previous)  # fmt: skip
                    previous = key
                held_back.append((asset, previous))

    events = copy_events(instance, materializations())
    seconds["materializations"] = time.perf_counter() - started
    progress(f"{events:,} materializations copied in {seconds['materializations']:.0f} s")

    started = time.perf_counter()
    planned: list[Row] = []
    failed_runs = 0
    for grid, assets, job in grids:
        for failed in grid.failed_runs():
            failed_runs += 1
            run_id = str(uuid.uuid4())
            instance.add_run(
                dg.DagsterRun(
                    job_name=job,
                    run_id=run_id,
                    status=dg.DagsterRunStatus.FAILURE,
                    asset_selection=frozenset(dg.AssetKey(a) for a in assets),
                    tags={
                        **failed.tags,
                        SYMBOLS_TAG: failed.symbol,
                        TRIGGER_TAG: "coverage_gap_sensor",
                    },
                )
            )
            for asset in assets:
                for key in failed.keys:
                    clock += step
                    entry = _planned(asset, key, run_id, clock, job)
                    planned.append(
                        (run_id, serialize_value(entry), "ASSET_MATERIALIZATION_PLANNED",
                         _utc(clock), asset, dg.AssetKey(asset).to_string(), key)
                    )  # fmt: skip
    events += copy_events(instance, iter(planned))
    seconds["failed_runs"] = time.perf_counter() - started

    started = time.perf_counter()
    for asset, key in held_back:
        clock += step
        instance.event_log_storage.store_event(_materialization(asset, key, clock))
    events += len(held_back)
    seconds["asset_records"] = time.perf_counter() - started

    return SeedResult(
        counts={cell.value: plan.counts[cell] for cell in Cell},
        daily_counts={cell.value: daily.counts[cell] for cell in Cell} if daily else {},
        failed_runs=failed_runs,
        events=events,
        seconds=seconds,
    )

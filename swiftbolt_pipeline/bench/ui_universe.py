"""The universe part of the UI bench's state: universes of thousands of members loaded the way
universe mode keeps them, one partition per universe x session of `universe_m15_bars`,
`universe_derived_bars` and `universe_d1_bars`, with each member's state in PostgreSQL
(`universes`, `universe_members`), not in Dagster.

`UniversePlan` cuts each universe's sessions into consecutive ranges, one `universe backfill`
run each: a range that succeeded (every partition materialized, carrying the metadata the
assets write: universe-wide counts, a few members failing SYMBOL_NOT_FOUND), one that failed
(the run failed before anything materialized: planned partitions, no materialization) or
one never backfilled (missing). Range lengths and states cycle, shifted per universe, so the
partition matrix is fragmented along both axes. `seed_universes` writes it:

- the members: `universes.set_members` (inactive `symbols` rows) and the failing members'
  outcomes through `universes.record_outcomes`, as a run records them;
- the partitions: `register_universe`, as `universe set` does;
- the runs: one per backfilled range, SUCCESS or FAILURE, with a run's range tags; their
  events (one ASSET_MATERIALIZATION_PLANNED per partition and asset, then the
  materializations of a successful run) through Dagster's own `store_event`, shaped as
  Dagster writes them in a run (`run_event`; a test compares it with a real run's)."""

from __future__ import annotations

import hashlib
import math
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import cached_property

import dagster as dg
import psycopg
from dagster._core.definitions.dependency import NodeHandle
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.execution.plan.handle import StepHandle
from dagster._serdes import serialize_value

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.daily import ROLLUP_TIMEFRAMES, period_start
from swiftbolt_pipeline.core.models import DERIVED_TIMEFRAMES, Provider, Timeframe
from swiftbolt_pipeline.defs.assets.universe import derived_metadata, fetch_metadata
from swiftbolt_pipeline.defs.assets.universe_daily import daily_metadata
from swiftbolt_pipeline.ingest.universe import SAMPLE, FetchSummary
from swiftbolt_pipeline.ingest.universe_daily import DailySummary
from swiftbolt_pipeline.names import (
    UNIVERSE_ASSETS,
    UNIVERSE_D1_BARS,
    UNIVERSE_DERIVED_BARS,
    UNIVERSE_M15_BARS,
    universe_partition_key,
    universe_range_tags,
)
from swiftbolt_pipeline.services.universe import register_universe
from swiftbolt_pipeline.storage import universes

from .ui_seed import Cell, copy_events

# The job Dagster names a `dg.materialize` run (what `swiftbolt universe backfill` launches).
EPHEMERAL_JOB = "__ephemeral_asset_job__"
# Regular-session bars per full session (XNYS): m15, h1, h4.
BARS_PER_SESSION = {Timeframe.M15: 26, Timeframe.H1: 7, Timeframe.H4: 2}
ALPACA_SYMBOLS = 50  # members per Alpaca request
ALPACA_PAGE = 10_000  # bars per Alpaca page


@dataclass(frozen=True)
class Range:
    universe: str
    members: int
    state: Cell
    days: tuple[date, ...]

    @property
    def run_id(self) -> str:
        """The id of the range's run (none for a missing range), stable for a given plan."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.universe}/{self.days[0]}"))


@dataclass(frozen=True)
class UniversePlan:
    """Universes of `sizes` members over `sessions`, cut into ranges (see the module)."""

    sizes: tuple[int, ...]
    sessions: tuple[date, ...]

    LENGTHS = (37, 12, 58, 5, 23, 41, 8, 30, 17)
    STATES = (
        Cell.MATERIALIZED, Cell.MATERIALIZED, Cell.MISSING, Cell.MATERIALIZED, Cell.FAILED,
        Cell.MATERIALIZED, Cell.MISSING, Cell.MATERIALIZED, Cell.FAILED,
    )  # fmt: skip
    FAILING_MEMBER_EVERY = 97  # members answering SYMBOL_NOT_FOUND

    def name(self, i: int) -> str:
        return f"bench-{i + 1}-{self.sizes[i]}"

    @property
    def names(self) -> list[str]:
        return [self.name(i) for i in range(len(self.sizes))]

    @staticmethod
    def member(k: int) -> str:
        """Member tickers are shared: a smaller universe is the start of a larger one."""
        return f"M{k:05d}"

    def members(self, i: int) -> list[str]:
        return [self.member(k) for k in range(self.sizes[i])]

    def failing_members(self, i: int) -> list[str]:
        return [self.member(k) for k in range(13, self.sizes[i], self.FAILING_MEMBER_EVERY)]

    def ranges(self, i: int) -> list[Range]:
        out: list[Range] = []
        start, n = 0, 3 * i  # each universe starts the cycle elsewhere
        while start < len(self.sessions):
            length = self.LENGTHS[n % len(self.LENGTHS)]
            state = self.STATES[n % len(self.STATES)]
            days = self.sessions[start : start + length]
            out.append(Range(self.name(i), self.sizes[i], state, days))
            start, n = start + length, n + 1
        return out

    @cached_property
    def counts(self) -> Counter[Cell]:
        """Partitions per state, per universe asset (both get the same runs)."""
        counts: Counter[Cell] = Counter()
        for i in range(len(self.sizes)):
            for r in self.ranges(i):
                counts[r.state] += len(r.days)
        return counts

    @property
    def partitions(self) -> int:
        return len(self.sizes) * len(self.sessions)


def _bar_ts(day: date, clock: time) -> str:
    return datetime.combine(day, clock, calendar.EXCHANGE_TZ).astimezone(UTC).isoformat()


def fetch_summary(plan: UniversePlan, i: int, days: tuple[date, ...]) -> FetchSummary:
    """What a successful Alpaca run over `days` sums up: one batch of 50 members per request,
    its 10,000-bar pages, the failing members counted, never listed beyond a sample."""
    members = plan.sizes[i]
    failed = plan.failing_members(i)
    served = members - len(failed)
    bars = BARS_PER_SESSION[Timeframe.M15] * len(days)
    pages = math.ceil(ALPACA_SYMBOLS * bars / ALPACA_PAGE)
    requests = math.ceil(members / ALPACA_SYMBOLS) * pages
    return FetchSummary(
        members=members,
        failed=len(failed),
        failures_by_code={"SYMBOL_NOT_FOUND": len(failed)} if failed else {},
        failed_sample=failed[:SAMPLE],
        rows=served * bars,
        requests=requests,
        expected_cost=requests,
        retries=0,
        symbol_sessions=members * len(days),
        resumed_sessions=0,
        empty_sessions=0,
        rejected_bars=0,
        providers=[Provider.ALPACA],
        fallback_used=False,
        first_bar=_bar_ts(days[0], time(9, 30)),
        last_bar=_bar_ts(days[-1], time(15, 45)),
    )


def range_metadata(plan: UniversePlan, i: int, r: Range) -> dict[str, dict[str, dg.MetadataValue]]:
    """Each universe asset's metadata on the partitions of successful range `r`, from the
    assets' own metadata functions."""
    days = list(r.days)
    summary = fetch_summary(plan, i, r.days)
    served = plan.sizes[i] - summary.failed
    derived = {k: days for k in range(served)}  # every served member-session, once
    written = {tf: served * BARS_PER_SESSION[tf] * len(days) for tf in DERIVED_TIMEFRAMES}
    periods = {tf: len({period_start(d, tf) for d in days}) for tf in ROLLUP_TIMEFRAMES}
    rolled = {tf: served * n for tf, n in periods.items()}
    return {
        UNIVERSE_M15_BARS: fetch_metadata(r.universe, days, days, summary),
        UNIVERSE_DERIVED_BARS: derived_metadata(
            [r.universe], plan.sizes[i], days, derived, written
        ),
        UNIVERSE_D1_BARS: daily_metadata(
            [r.universe], days, days, daily_summary(plan, i, days), rolled
        ),
    }


def daily_summary(plan: UniversePlan, i: int, days: list[date]) -> DailySummary:
    """What a successful grouped d1 run over `days` sums up: one Polygon request per session
    for every member, the failing members counted."""
    failed = plan.failing_members(i)
    return DailySummary(
        members=plan.sizes[i],
        failed=len(failed),
        failures_by_code={"SYMBOL_NOT_FOUND": len(failed)} if failed else {},
        failed_sample=failed[:SAMPLE],
        rows=(plan.sizes[i] - len(failed)) * len(days),
        requests=len(days),
        planned_requests=len(days),
        retries=0,
        source="polygon grouped",
        empty_answers=0,
    )


def data_version(run_id: str, asset: str, key: str) -> str:
    """A data version per materialization, as Dagster derives one in a run (a hash)."""
    return hashlib.sha256(f"{run_id}{asset}{key}".encode()).hexdigest()


def run_event(
    asset: str,
    key: str,
    run_id: str,
    timestamp: float,
    metadata: dict[str, dg.MetadataValue],
    upstream: tuple[str, int] | None = None,
) -> EventLogEntry:
    """A materialization as a step of a `dg.materialize` run logs it (tags, handles, message);
    `upstream`: (asset, storage id) of the materialization it was derived from, which Dagster
    records as input data version and event pointer."""
    universe, day = key.split("|")[1], key.split("|")[0]
    tags = {
        "dagster/code_version": run_id,
        "dagster/data_version": data_version(run_id, asset, key),
        "dagster/partition/day": day,
        "dagster/partition/universe": universe,
    }
    if upstream is not None:
        parent, storage_id = upstream
        tags[f"dagster/input_data_version/{parent}"] = data_version(run_id, parent, key)
        tags[f"dagster/input_event_pointer/{parent}"] = str(storage_id)
    materialization = dg.AssetMaterialization(
        asset_key=asset, partition=key, metadata=metadata, tags=tags
    )
    handle = NodeHandle(asset, None)
    return EventLogEntry(
        error_info=None,
        level=10,
        user_message=f"Materialized value {asset}.",
        run_id=run_id,
        timestamp=timestamp,
        step_key=asset,
        job_name=EPHEMERAL_JOB,
        dagster_event=DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=EPHEMERAL_JOB,
            step_handle=StepHandle(handle),
            node_handle=handle,
            step_kind_value="COMPUTE",
            logging_tags={
                "job_name": EPHEMERAL_JOB,
                "op_name": asset,
                "resource_fn_name": "None",
                "resource_name": "None",
                "run_id": run_id,
                "step_key": asset,
            },
            event_specific_data=StepMaterializationData(materialization),
            message=f"Materialized value {asset}.",
            pid=os.getpid(),
        ),
    )


def planned_event(asset: str, key: str, run_id: str, timestamp: float) -> EventLogEntry:
    event = DagsterEvent.build_asset_materialization_planned_event(
        EPHEMERAL_JOB, asset, AssetMaterializationPlannedData(dg.AssetKey(asset), partition=key)
    )
    return EventLogEntry(
        error_info=None,
        level=10,
        user_message="",
        run_id=run_id,
        timestamp=timestamp,
        step_key=asset,
        job_name=EPHEMERAL_JOB,
        dagster_event=event,
    )


@dataclass(frozen=True)
class UniverseSeedResult:
    counts: dict[str, int]  # per universe asset: materialized / failed / missing partitions
    runs: int
    events: int


def _add_run(instance: dg.DagsterInstance, r: Range) -> None:
    success = r.state is Cell.MATERIALIZED
    instance.add_run(
        dg.DagsterRun(
            job_name=EPHEMERAL_JOB,
            run_id=r.run_id,
            status=dg.DagsterRunStatus.SUCCESS if success else dg.DagsterRunStatus.FAILURE,
            asset_selection=frozenset(dg.AssetKey(a) for a in UNIVERSE_ASSETS),
            tags=universe_range_tags(r.universe, r.days[0], r.days[-1]),
        )
    )


def _write_run(instance: dg.DagsterInstance, plan: UniversePlan, i: int, r: Range) -> int:
    """One backfilled range's run and its events (a millisecond apart, in order): planned
    events COPYed (the columns `store_event` fills, as `ui_seed` does), materializations
    through Dagster's batch write, which also updates the asset's record and tags."""
    _add_run(instance, r)
    keys = [str(universe_partition_key(r.universe, day)) for day in r.days]
    clock = datetime.now(UTC).timestamp()
    planned = [
        planned_event(asset, key, r.run_id, clock + n * 0.001)
        for n, (asset, key) in enumerate((a, k) for a in UNIVERSE_ASSETS for k in keys)
    ]
    written = copy_events(instance, iter(_planned_row(e) for e in planned))
    if r.state is not Cell.MATERIALIZED:
        return written
    metadata = range_metadata(plan, i, r)
    storage = instance.event_log_storage
    clock += len(planned) * 0.001
    storage.store_event_batch(
        [
            run_event(
                UNIVERSE_M15_BARS, key, r.run_id, clock + n * 0.001, metadata[UNIVERSE_M15_BARS]
            )
            for n, key in enumerate(keys)
        ]
    )
    pointers = {
        record.partition_key: record.storage_id
        for record in instance.get_records_for_run(
            r.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=len(keys)
        ).records
    }
    clock += len(keys) * 0.001
    storage.store_event_batch(
        [
            run_event(
                UNIVERSE_DERIVED_BARS,
                key,
                r.run_id,
                clock + n * 0.001,
                metadata[UNIVERSE_DERIVED_BARS],
                (UNIVERSE_M15_BARS, pointers[key]),
            )
            for n, key in enumerate(keys)
        ]
    )
    clock += len(keys) * 0.001
    storage.store_event_batch(
        [
            run_event(
                UNIVERSE_D1_BARS,
                key,
                r.run_id,
                clock + n * 0.001,
                metadata[UNIVERSE_D1_BARS],
                (UNIVERSE_M15_BARS, pointers[key]),
            )
            for n, key in enumerate(keys)
        ]
    )
    return written + len(UNIVERSE_ASSETS) * len(keys)


def _planned_row(entry: EventLogEntry) -> tuple[str | None, ...]:
    event = entry.get_dagster_event()
    asset = event.asset_key
    assert asset is not None
    return (
        entry.run_id, serialize_value(entry), event.event_type_value,
        datetime.fromtimestamp(entry.timestamp, UTC).replace(tzinfo=None).isoformat(),
        entry.step_key, asset.to_string(), event.partition,
    )  # fmt: skip


def seed_universes(
    instance: dg.DagsterInstance, conn: psycopg.Connection, plan: UniversePlan
) -> UniverseSeedResult:
    for i, name in enumerate(plan.names):
        universes.set_members(conn, name, plan.members(i))
        ids = universes.members(conn, name)
        last = [r for r in plan.ranges(i) if r.state is Cell.MATERIALIZED][-1]
        universes.record_outcomes(
            conn,
            name,
            [
                universes.MemberOutcome(ids[t], "SYMBOL_NOT_FOUND", f"{t} is not a known ticker")
                for t in plan.failing_members(i)
            ],
            run_id=last.run_id,
            first=last.days[0],
            last=last.days[-1],
            now=datetime.now(UTC),
        )
        conn.commit()
        register_universe(instance, name)
    events = 0
    for i in range(len(plan.sizes)):
        for r in plan.ranges(i):
            if r.state is not Cell.MISSING:
                events += _write_run(instance, plan, i, r)
    runs = sum(
        1 for i in range(len(plan.sizes)) for r in plan.ranges(i) if r.state is not Cell.MISSING
    )
    return UniverseSeedResult({c.value: plan.counts[c] for c in Cell}, runs, events)

"""`corporate_actions_sensor`: keep each watched symbol's splits and dividends, and stored prices
consistent with Polygon's split adjustment.

Each tick checks a few symbols' splits and dividends and requests one `bars_job` run per
symbol whose stored bars an executed split made stale (`ingest/corporate_actions.py` does the
work), tagged `swiftbolt/trigger=split`. The run replaces those partitions (writes are
idempotent per partition) with freshly adjusted bars. The symbol's official daily bars before
the split are stale too: one `daily_job` run re-fetches its years from the daily depth's start
through the split's year (one request), and rolls w1/mo1 up again."""

from __future__ import annotations

import dagster as dg

from swiftbolt_pipeline.defs.jobs import BARS_JOB, DAILY_JOB, bars_job, daily_job
from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.defs.resources import PolygonResource, WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.ingest.corporate_actions import (
    ClaimedRefetch,
    check_corporate_actions,
    claim_refetches,
)
from swiftbolt_pipeline.names import (
    SPLITS_TAG,
    SYMBOL_TAG,
    TRIGGER_TAG,
    range_tags,
    year_range_tags,
)
from swiftbolt_pipeline.services.coverage import inflight_ranges

SENSOR_NAME = "corporate_actions_sensor"
TRIGGER = "split"


def refetch_request(claimed: ClaimedRefetch) -> dg.RunRequest:
    refetch, days = claimed.refetch, claimed.days
    return dg.RunRequest(
        job_name=BARS_JOB,
        tags={
            **range_tags(refetch.ticker, refetch.ticker, days[0], days[-1]),
            SYMBOL_TAG: refetch.ticker,
            TRIGGER_TAG: TRIGGER,
            SPLITS_TAG: ",".join(d.isoformat() for d in refetch.execution_dates),
        },
    )


def daily_refetch_request(claimed: ClaimedRefetch, first_year: int) -> dg.RunRequest:
    """The official daily bars of `claimed`'s symbol from `first_year` (the daily depth's)
    through its split's year, adjusted afresh."""
    refetch = claimed.refetch
    last_year = max(refetch.execution_dates).year
    return dg.RunRequest(
        job_name=DAILY_JOB,
        tags={
            **year_range_tags(refetch.ticker, refetch.ticker, first_year, last_year),
            SYMBOL_TAG: refetch.ticker,
            TRIGGER_TAG: TRIGGER,
            SPLITS_TAG: ",".join(d.isoformat() for d in refetch.execution_dates),
        },
    )


@dg.sensor(
    name=SENSOR_NAME,
    jobs=[bars_job, daily_job],
    minimum_interval_seconds=15 * 60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Checks each watched symbol's splits and dividends on Polygon at most once a day and, "
        "when a split "
        "makes stored (split-adjusted) bars stale, requests one bars_job run re-fetching the "
        "symbol's stored range before the split (tag swiftbolt/trigger=split), and one "
        "daily_job run re-fetching its official daily bars up to the split's year."
    ),
)
def corporate_actions_sensor(
    context: dg.SensorEvaluationContext,
    polygon: PolygonResource,
    warehouse: WarehouseResource,
    pipeline: PipelineSettings,
) -> dg.SensorResult | dg.SkipReason:
    excluded = inflight_ranges(context.instance)
    with warehouse.connect() as conn:
        counts = check_corporate_actions(conn, polygon, pipeline, context.log)
        planned, settled = claim_refetches(
            conn, pipeline, lambda ticker, day: any(r.covers(ticker, day) for r in excluded)
        )
    summary = f"{counts.summary()}; settled: {len(settled)}"
    if not planned:
        return dg.SkipReason(f"no stale bars; {summary}")
    assert SYMBOLS.name is not None
    known = set(context.instance.get_dynamic_partitions(SYMBOLS.name))
    new_symbols = sorted({c.refetch.ticker for c in planned} - known)
    context.log.info(
        f"{summary}; re-fetching "
        + ", ".join(
            f"{c.refetch.ticker} {c.refetch.first_day}..{c.refetch.last_day}" for c in planned
        )
    )
    return dg.SensorResult(
        run_requests=[refetch_request(c) for c in planned]
        + [daily_refetch_request(c, pipeline.daily_start.year) for c in planned],
        dynamic_partitions_requests=[SYMBOLS.build_add_request(new_symbols)] if new_symbols else [],
    )

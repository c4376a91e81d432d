"""Dagster wiring of crypto pairs: the job over the crypto bar assets, the gap sensor that
fills missing UTC days (weekends and holidays included) with one backfill per pair per range
of consecutive days, and the schedule keeping today's UTC day fresh. The watchlist sensor
(`defs/sensors.py`) registers `X:` tickers in the `crypto_symbols` partitions."""

import dagster as dg

from swiftbolt_pipeline.core import crypto_calendar
from swiftbolt_pipeline.core.crypto_calendar import CRYPTO
from swiftbolt_pipeline.core.models import is_crypto
from swiftbolt_pipeline.defs.partitions import CRYPTO_SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import (
    CRYPTO_BAR_ASSETS,
    CRYPTO_DERIVED_ASSETS,
    CRYPTO_SYMBOLS_PARTITIONS,
    PRIORITY_TAG,
    SYMBOL_TAG,
    TRIGGER_TAG,
    range_tags,
)
from swiftbolt_pipeline.services.coverage import inflight_ranges
from swiftbolt_pipeline.services.crypto_coverage import (
    FIRST_BAR,
    crypto_gaps_to_request,
    expected_days,
)
from swiftbolt_pipeline.services.launch import backfill_request
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.crypto_coverage import day_states

CRYPTO_BARS_JOB = "crypto_bars_job"
CRYPTO_ASSET_KEYS = tuple(dg.AssetKey(name) for name in CRYPTO_BAR_ASSETS.values())
CRYPTO_DERIVED_KEYS = tuple(dg.AssetKey(name) for name in CRYPTO_DERIVED_ASSETS)
MAX_REQUESTS_PER_TICK = 25

crypto_bars_job = dg.define_asset_job(
    CRYPTO_BARS_JOB,
    selection=dg.AssetSelection.assets(*CRYPTO_ASSET_KEYS),
    description="Crypto m15 bars from the history providers, then h1/h4/d1 derived on UTC "
    "buckets, for a range of UTC days.",
)


@dg.sensor(
    name="crypto_coverage_gap_sensor",
    asset_selection=crypto_bars_job.selection,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds incomplete UTC days of watched crypto pairs (`X:` tickers; every day counts, "
        "weekends and holidays too) and requests one backfill (a single run) per pair per "
        "range of consecutive days: a fetch where m15 bars are missing or still provisional "
        "after their day ended, a derive-only backfill where only h1/h4/d1 are. Ranges in "
        "flight and pairs whose last fetch failed less than 10 minutes ago are left alone."
    ),
)
def crypto_coverage_gap_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, pipeline: PipelineSettings
) -> dg.SensorResult | dg.SkipReason:
    with warehouse.connect() as conn:
        pairs = [s for s in watchlist.list_symbols(conn) if is_crypto(s.ticker)]
        if not pairs:
            return dg.SkipReason("no crypto pair on the watchlist")
        days = expected_days(pipeline, max(s.window_days for s in pairs))
        states = day_states(conn, [s.id for s in pairs], days)
    gaps = crypto_gaps_to_request(pairs, states, pipeline, inflight_ranges(context.instance))
    if not gaps:
        return dg.SkipReason(f"{len(pairs)} crypto pair(s) complete, waiting or in flight")
    known = set(context.instance.get_dynamic_partitions(CRYPTO_SYMBOLS_PARTITIONS))
    new_pairs = sorted({g.symbol for g in gaps} - known)
    assert context.repository_def is not None  # the daemon evaluates sensors with defs
    requests = [
        backfill_request(
            context.repository_def.asset_graph,
            CRYPTO_ASSET_KEYS if gap.fetch else CRYPTO_DERIVED_KEYS,
            symbol=gap.symbol,
            first_day=gap.gap.start,
            last_day=gap.gap.end,
            tags={
                SYMBOL_TAG: gap.symbol,
                TRIGGER_TAG: "crypto_coverage_gap_sensor",
                PRIORITY_TAG: str(gap.priority),
            },
            cal=CRYPTO,
        )
        for gap in gaps[:MAX_REQUESTS_PER_TICK]
    ]
    context.log.info(
        f"requesting {len(requests)} of {len(gaps)} crypto backfill(s): "
        + ", ".join(
            f"{g.symbol} {g.gap.start}..{g.gap.end}{'' if g.fetch else ' (derive)'}"
            for g in gaps[:5]
        )
    )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[CRYPTO_SYMBOLS.build_add_request(new_pairs)]
        if new_pairs
        else [],
    )


@dg.schedule(
    name="crypto_today_schedule",
    job_name=CRYPTO_BARS_JOB,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's UTC day of every watched crypto pair every 15 minutes, around the "
    "clock, from the history provider (Tradier has no crypto), stored provisional; the gap "
    "sensor fetches the day again as final once it is over.",
)
def crypto_today_schedule(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineSettings
) -> dg.RunRequest | dg.SkipReason:
    now = pipeline.pinned_now() or context.scheduled_execution_time
    today = crypto_calendar.utc_date(now)
    if now < crypto_calendar.day_start(today) + FIRST_BAR:
        return dg.SkipReason("today's first 15-minute bar is not complete yet")
    pairs = list(context.instance.get_dynamic_partitions(CRYPTO_SYMBOLS_PARTITIONS))
    if not pairs:
        return dg.SkipReason("no crypto pair on the watchlist")
    return dg.RunRequest(
        run_key=f"crypto-today:{now.isoformat()}",
        tags={**range_tags(pairs[0], pairs[-1], today, today), TRIGGER_TAG: "crypto_today"},
    )

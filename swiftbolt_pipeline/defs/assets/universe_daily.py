"""`universe_d1_bars`: official daily bars of every member of a universe, partitioned universe
x session like the other universe assets (one event per universe and day), fetched the
cheapest way the run's providers allow (`ingest/universe_daily.py`): Polygon's grouped daily
(one request per session for all members) or per-symbol daily requests (Alpaca: 50 members
per request), then each member's w1 and mo1 rolled up from its stored d1 bars."""

from contextlib import ExitStack
from datetime import date

import dagster as dg

from swiftbolt_pipeline.core.errors import ProviderError
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.defs.assets.m15 import PlanConfig, history_providers
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA
from swiftbolt_pipeline.defs.assets.universe import universe_run_range
from swiftbolt_pipeline.ingest import universe_daily as ingest
from swiftbolt_pipeline.names import UNIVERSE_D1_BARS, UNIVERSE_M15_BARS
from swiftbolt_pipeline.providers.registry import (
    HISTORY_PROVIDERS,
    DailyProvider,
    GroupedDailyProvider,
)
from swiftbolt_pipeline.storage import universes

_RESOURCES = {"warehouse", "pipeline", *(p.value for p in HISTORY_PROVIDERS)}


def build_universe_daily_asset(
    partitions_def: dg.MultiPartitionsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=UNIVERSE_D1_BARS,
        partitions_def=partitions_def,
        # Order only (d1 is never derived from m15): a run fetches m15 first, so a market that
        # learns tickers from requests (the emulator) lists the members in its grouped answer.
        deps=[UNIVERSE_M15_BARS],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="universe",
        kinds={"alpaca", "polygon", "postgres"},
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        required_resource_keys=_RESOURCES,
        description=(
            "Official daily bars (`d1`, the provider's own daily aggregate, extended hours and "
            "the closing auction included, `ts` = session open) of every member of a "
            "universe, one partition per universe and NYSE session that is over. Fetched the "
            "way that needs the fewest requests for the run's members x sessions: Polygon's "
            "grouped daily (one request per session for every member) or per-symbol daily "
            "requests (Alpaca 50 members per request, Polygon one); run config `provider` "
            "forces one provider. A member missing from a day's answer is recorded as "
            "answered without a bar; one with no bar in the run counts as SYMBOL_NOT_FOUND "
            "here without failing the others. Then each member that got bars has its `w1` and "
            "`mo1` bars rolled up again from its stored d1 bars, over every week and month "
            "holding one of the run's sessions, exactly as `w1_bars` and `mo1_bars` are (one "
            "event per partition for all three timeframes). Stored in `ohlc_bars_v2`."
        ),
    )
    def universe_d1_bars(
        context: dg.AssetExecutionContext, config: PlanConfig
    ) -> dg.MaterializeResult:
        resources = context.resources
        pipeline = resources.pipeline
        names, days = universe_run_range(context)
        over = [d for d in days if d < pipeline.today]  # a day's official bar exists once over
        providers = history_providers(config, pipeline)
        with resources.warehouse.connect() as conn, ExitStack() as clients:
            members = {s: i for n in names for s, i in universes.members(conn, n).items()}

            def open_daily(provider: Provider) -> DailyProvider:
                return clients.enter_context(getattr(resources, provider.value).daily_client())

            def open_grouped(provider: Provider) -> GroupedDailyProvider:
                resource = getattr(resources, provider.value)
                return clients.enter_context(resource.grouped_daily_client())

            run = ingest.fetch_universe_daily(
                conn, providers, members if over else {}, over, open_daily, open_grouped,
                run_id=context.run.run_id,
            )  # fmt: skip
        served = [members[r.symbol] for r in run.results if r.provider is not None]
        rolled = ingest.roll_up_members(resources.warehouse.connect, served, over)
        summary = ingest.summarize(run)
        context.log.info(
            f"{','.join(names)}: {summary.members} member(s) x {len(over)} session(s) via "
            f"{summary.source}: {summary.requests} request(s) ({summary.planned_requests} planned)"
        )
        if summary.failed:
            context.log.warning(
                f"{summary.failed} of {summary.members} member(s) got no daily bars: "
                f"{_codes(summary.failures_by_code)} (e.g. {', '.join(summary.failed_sample)})"
            )
        if summary.members and summary.failed == summary.members:
            first = next(r.error for r in run.results if r.error)
            raise ProviderError(
                first.code,
                f"every member of {','.join(names)} failed ({_codes(summary.failures_by_code)})"
                f": {first.message}",
                provider=first.provider,
                requests=summary.requests,
            )
        return dg.MaterializeResult(metadata=daily_metadata(names, days, over, summary, rolled))

    return universe_d1_bars


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}={n}" for code, n in sorted(counts.items())) or "-"


def daily_metadata(
    names: list[str],
    days: list[date],
    over: list[date],
    s: ingest.DailySummary,
    rolled: dict[Timeframe, int],
) -> dict[str, dg.MetadataValue]:
    return {
        "universe": dg.MetadataValue.text(",".join(names)),
        "members": dg.MetadataValue.int(s.members),
        "sessions": dg.MetadataValue.int(len(days)),
        "today_skipped": dg.MetadataValue.int(len(days) - len(over)),
        "rows": dg.MetadataValue.int(s.rows),
        "requests": dg.MetadataValue.int(s.requests),
        "planned_requests": dg.MetadataValue.int(s.planned_requests),
        "retries": dg.MetadataValue.int(s.retries),
        "source": dg.MetadataValue.text(s.source),
        "empty_answers": dg.MetadataValue.int(s.empty_answers),
        "failed_symbols": dg.MetadataValue.int(s.failed),
        "failures_by_code": dg.MetadataValue.text(_codes(s.failures_by_code)),
        "failed_sample": dg.MetadataValue.text(",".join(s.failed_sample) or "-"),
        **{f"{tf.value}_rows": dg.MetadataValue.int(n) for tf, n in rolled.items()},
    }

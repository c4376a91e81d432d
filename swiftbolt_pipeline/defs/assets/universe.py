"""Universe mode: `universe_m15_bars` and `universe_derived_bars`, partitioned universe x
session. One partition (and one materialization event) per universe and day, however many
members the universe has; the members' bars land in `ohlc_bars_v2` like the watchlist's."""

from collections.abc import Sequence
from contextlib import ExitStack
from datetime import date
from typing import Any

import dagster as dg
import psycopg

from swiftbolt_pipeline.core.errors import ProviderError
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.defs.assets.m15 import PlanConfig, history_providers
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA
from swiftbolt_pipeline.ingest import universe as ingest
from swiftbolt_pipeline.ingest.store import SymbolIngest
from swiftbolt_pipeline.names import (
    UNIVERSE_D1_BARS,
    UNIVERSE_DERIVED_BARS,
    UNIVERSE_M15_BARS,
    days_by_universe,
)
from swiftbolt_pipeline.providers.registry import (
    HISTORY_PROVIDERS,
    HistoryProvider,
    history_batch_size,
)
from swiftbolt_pipeline.storage import universes

_RESOURCES = {"warehouse", "pipeline", *(p.value for p in HISTORY_PROVIDERS)}


def universe_run_config(
    provider: str, selection: Sequence[str] = (UNIVERSE_M15_BARS, UNIVERSE_DERIVED_BARS)
) -> dict[str, Any]:
    """Run config forcing `provider` for a run of the universe assets in `selection` (Dagster
    refuses config for an asset the run leaves out)."""
    forced = {"config": PlanConfig(provider=provider).model_dump()}
    fetching = (UNIVERSE_M15_BARS, UNIVERSE_D1_BARS)
    return {"ops": {name: forced for name in selection if name in fetching}}


def universe_run_range(context: dg.AssetExecutionContext) -> tuple[list[str], list[date]]:
    """The run's universes and sessions. A run launched from the UI over several universes
    is their rectangle: every universe over the same sessions."""
    plan = days_by_universe(context.partition_keys)
    return list(plan), sorted({d for days in plan.values() for d in days})


def _members(conn: psycopg.Connection, names: list[str]) -> dict[str, dict[str, int]]:
    return {name: universes.members(conn, name) for name in names}


def build_universe_assets(
    partitions_def: dg.MultiPartitionsDefinition,
) -> list[dg.AssetsDefinition]:
    @dg.asset(
        name=UNIVERSE_M15_BARS,
        partitions_def=partitions_def,
        # Many days of a universe are one run; the provider requests span all of them.
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="universe",
        kinds={"alpaca", "polygon", "postgres"},
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        required_resource_keys=_RESOURCES,
        description=(
            "Raw regular-session 15-minute bars of every member of a universe (a named symbol "
            "list, `swiftbolt universe set`), one partition per universe and NYSE session: "
            "Dagster's bookkeeping grows with days, not members x days. Past sessions only, "
            "from the history providers (run config `provider` forces one): Alpaca in batches "
            "of 50 symbols and 10,000-bar pages, Polygon one symbol per request. Stored in "
            "`ohlc_bars_v2` like watchlist bars; a member that fails (e.g. SYMBOL_NOT_FOUND) "
            "never fails the others: it is counted here and its outcome recorded in "
            "`universe_members`."
        ),
    )
    def universe_m15_bars(
        context: dg.AssetExecutionContext, config: PlanConfig
    ) -> dg.MaterializeResult:
        resources = context.resources
        pipeline = resources.pipeline
        names, days = universe_run_range(context)
        name = ",".join(names)
        providers = history_providers(config, pipeline)
        past = [d for d in days if d < pipeline.today]  # today's session: watchlist mode only
        with resources.warehouse.connect() as conn, ExitStack() as clients:
            by_universe = _members(conn, names)
            # A symbol in two universes of the run is fetched once.
            members = {s: i for tickers in by_universe.values() for s, i in tickers.items()}
            context.log.info(
                f"{name}: {len(members)} member(s), {len(past)} session(s) via "
                f"{', '.join(providers)}"
            )

            def open_client(provider: Provider) -> HistoryProvider:
                return clients.enter_context(getattr(resources, provider.value).history_client())

            results: list[SymbolIngest] = []
            if past and members:
                results = ingest.fetch_members(
                    resources.warehouse.connect, providers, members, past, open_client,
                    run_id=context.run.run_id, extended_hours=pipeline.extended_hours,
                    batch_size=history_batch_size(providers[0]),
                )  # fmt: skip
                parked = ingest.record_outcomes(
                    conn, results, by_universe, run_id=context.run.run_id, now=pipeline.now()
                )
                if parked:
                    context.log.warning(f"{parked} watched member(s) parked (SYMBOL_NOT_FOUND)")
        summary = ingest.summarize(results, providers)
        if summary.failed:
            context.log.warning(
                f"{summary.failed} of {summary.members} member(s) failed: "
                f"{_codes(summary.failures_by_code)} (e.g. {', '.join(summary.failed_sample)})"
            )
        if results and summary.failed == summary.members:  # nothing succeeded: the run fails
            first = next(r.error for r in results if r.error)
            raise ProviderError(
                first.code,
                f"every member of {name} failed ({_codes(summary.failures_by_code)}): "
                f"{first.message}",
                provider=first.provider,
                requests=summary.requests,
            )
        return dg.MaterializeResult(metadata=fetch_metadata(name, days, past, summary))

    @dg.asset(
        name=UNIVERSE_DERIVED_BARS,
        partitions_def=partitions_def,
        deps=[UNIVERSE_M15_BARS],
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="universe",
        kinds={"polars", "postgres"},
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        required_resource_keys={"warehouse"},
        description=(
            "h1 and h4 bars of every member of a universe, derived with polars from its "
            "stored m15 bars exactly as `h1_bars` and `h4_bars` are (session-anchored), in one "
            "asset: one read of a member's m15 bars serves both, and a partition costs one "
            "event instead of two. Only the member-sessions whose h1 or h4 bars do not match "
            "their m15 bars (never derived, or m15 written again since) are derived, so a "
            "re-run over a derived range writes nothing. Stored in `ohlc_bars_v2`."
        ),
    )
    def universe_derived_bars(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        names, days = universe_run_range(context)
        warehouse = context.resources.warehouse
        with warehouse.connect() as conn:
            by_universe = _members(conn, names)
            members = {s: i for tickers in by_universe.values() for s, i in tickers.items()}
            stale = ingest.out_of_date(conn, list(members.values()), days)
        written = ingest.derive_members(warehouse.connect, stale)
        return dg.MaterializeResult(
            metadata=derived_metadata(names, len(members), days, stale, written)
        )

    return [universe_m15_bars, universe_derived_bars]


def _codes(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}={n}" for code, n in sorted(counts.items())) or "-"


def fetch_metadata(
    name: str, days: list[date], past: list[date], s: ingest.FetchSummary
) -> dict[str, dg.MetadataValue]:
    """What `universe_m15_bars` records on each partition of a run: universe-wide counts."""
    return {
        "universe": dg.MetadataValue.text(name),
        "members": dg.MetadataValue.int(s.members),
        "sessions": dg.MetadataValue.int(len(days)),
        "today_skipped": dg.MetadataValue.int(len(days) - len(past)),
        "symbol_sessions": dg.MetadataValue.int(s.symbol_sessions),
        "rows": dg.MetadataValue.int(s.rows),
        "requests": dg.MetadataValue.int(s.requests),
        "expected_cost": dg.MetadataValue.int(s.expected_cost),
        "retries": dg.MetadataValue.int(s.retries),
        "provider": dg.MetadataValue.text(",".join(s.providers) or "-"),
        "fallback_used": dg.MetadataValue.bool(s.fallback_used),
        "failed_symbols": dg.MetadataValue.int(s.failed),
        "failures_by_code": dg.MetadataValue.text(_codes(s.failures_by_code)),
        "failed_sample": dg.MetadataValue.text(",".join(s.failed_sample) or "-"),
        "resumed_sessions": dg.MetadataValue.int(s.resumed_sessions),
        "empty_sessions": dg.MetadataValue.int(s.empty_sessions),
        "rejected_bars": dg.MetadataValue.int(s.rejected_bars),
        "first_bar": dg.MetadataValue.text(s.first_bar or "-"),
        "last_bar": dg.MetadataValue.text(s.last_bar or "-"),
    }


def derived_metadata(
    names: list[str],
    members: int,
    days: list[date],
    stale: dict[int, list[date]],
    written: dict[Timeframe, int],
) -> dict[str, dg.MetadataValue]:
    """What `universe_derived_bars` records on each partition of a run."""
    return {
        "universe": dg.MetadataValue.text(",".join(names)),
        "members": dg.MetadataValue.int(members),
        "sessions": dg.MetadataValue.int(len(days)),
        "rederived_symbol_sessions": dg.MetadataValue.int(sum(map(len, stale.values()))),
        "rows": dg.MetadataValue.int(sum(written.values())),
        **{f"{tf.value}_rows": dg.MetadataValue.int(n) for tf, n in written.items()},
    }

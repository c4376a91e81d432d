"""`m15_bars`: raw 15-minute bars per symbol x session: history from the configured history
providers (Polygon, Alpaca; primary first, fallback on outage), today's session from Tradier."""

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import dagster as dg
import psycopg
from pydantic import Field

from swiftbolt_pipeline.config import PipelineClock, parse_providers
from swiftbolt_pipeline.core import calendar, completeness
from swiftbolt_pipeline.core.clean import merge_counts
from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.defs.assets.metadata import ASSET_METADATA, preview
from swiftbolt_pipeline.defs.checks import (
    check_fetch_complete,
    check_m15,
    check_provider_data,
    m15_check_specs,
)
from swiftbolt_pipeline.defs.resources import (
    TradierResource,
    WarehouseResource,
)
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.ingest.history import (
    HistoryRun,
    HistoryTask,
    finish_history,
    history_round,
    start_history,
)
from swiftbolt_pipeline.ingest.store import SymbolIngest, record_symbol_outcomes
from swiftbolt_pipeline.ingest.today import ingest_today
from swiftbolt_pipeline.names import M15_BARS, MISSING_ONLY_TAG, days_by_symbol
from swiftbolt_pipeline.providers.registry import HISTORY_PROVIDERS
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.coverage import session_states


class PlanConfig(dg.Config):
    """Run config of `m15_plan` (the launchpad, `swiftbolt backfill --provider NAME`)."""

    provider: str | None = Field(
        default=None,
        description="Force one history provider for this run (polygon or alpaca); "
        "unset: SWIFTBOLT_HISTORY_PROVIDERS, primary first with fallback.",
    )


def plan_run_config(provider: str) -> dict[str, Any]:
    """Run config forcing `provider` for a run that materializes `m15_bars`."""
    plan = {"config": PlanConfig(provider=provider).model_dump()}
    return {"ops": {M15_BARS: {"ops": {"m15_plan": plan}}}}


def history_providers(config: PlanConfig, pipeline: PipelineSettings) -> tuple[Provider, ...]:
    """The run's history providers in order: the forced one (run config), else the configured."""
    if config.provider is None:
        return tuple(Provider(p) for p in pipeline.history_providers)
    return parse_providers(config.provider, single="run config provider")


@dataclass(frozen=True)
class _Plan:
    """What the first step decided, for the steps after it."""

    days: dict[str, list[date]]
    ids: dict[str, int]
    providers: tuple[Provider, ...]
    now: datetime


@dataclass(frozen=True)
class _Fetched:
    """One step's per-symbol outcomes; `skipped` names an unconfigured provider."""

    results: list[SymbolIngest]
    skipped: tuple[Provider, ...] = ()


CHECK_OUTPUTS = [spec.get_python_identifier() for spec in m15_check_specs()]


def build_m15_asset(partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    @dg.graph_asset(
        name=M15_BARS,
        partitions_def=partitions_def,
        # A backfill of many days is one run, coalesced into few provider requests.
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="bars",
        kinds={"polygon", "postgres", "polars"},
        check_specs=m15_check_specs(),
        metadata=ASSET_METADATA,
        owners=["team:data-platform"],
        description=(
            "Raw regular-session 15-minute OHLCV bars, one partition per symbol and NYSE "
            "session, stored in `ohlc_bars_v2` (timeframe m15). Historical sessions come from "
            "the history providers (SWIFTBOLT_HISTORY_PROVIDERS, or the run config `provider` "
            "of `m15_plan`): Polygon aggregates in coalesced windows of about 50 sessions, "
            "Alpaca in multi-symbol batches of up to 50 symbols; when one is unavailable "
            "(outage, open circuit breaker) the next takes the remaining windows. Today's "
            "session comes from Tradier time & sales (`is_intraday`), replaced later. Each "
            "provider is called by its own step holding that provider's pool; a step with "
            "nothing to fetch is skipped and takes no slot."
        ),
    )
    def m15_bars() -> dict[str, Any]:
        route = m15_plan()
        # A fan-in step is skipped only when every source was: `stored` is always produced,
        # so the checks always run. History outcomes come first, as they are recorded in order.
        fetched = [route.stored]
        first = {p: _history_op(p, fallback=False)([getattr(route, p)]) for p in HISTORY_PROVIDERS}
        fetched += [step.done for step in first.values()]
        for p in HISTORY_PROVIDERS:
            handoffs = [getattr(step, p) for q, step in first.items() if q != p]
            fetched.append(_history_op(p, fallback=True)(handoffs))
        fetched.append(m15_tradier(route.plan, route.tradier))
        outputs = m15_checks(route.plan, fetched)
        return {name: getattr(outputs, name) for name in ["result", *CHECK_OUTPUTS]}

    return m15_bars


@dg.op(
    out={
        "plan": dg.Out(),
        "stored": dg.Out(),
        **{p.value: dg.Out(is_required=False) for p in HISTORY_PROVIDERS},
        "tradier": dg.Out(is_required=False),
    },
)
def m15_plan(
    context: dg.OpExecutionContext,
    config: PlanConfig,
    warehouse: WarehouseResource,
    pipeline: PipelineSettings,
) -> Iterator[dg.Output[Any]]:
    """Which provider steps have work: history to the run's first history provider, today's
    session to Tradier. The others are skipped, so they never wait for or take a slot."""
    providers = history_providers(config, pipeline)
    today = pipeline.today
    plan = days_by_symbol(list(context.partition_keys))
    stored: list[SymbolIngest] = []
    with warehouse.connect() as conn:
        ids = watchlist.ensure(conn, list(plan))
        for symbol, days in plan.items():
            context.log.info(f"{symbol}: {len(days)} session(s) {days[0]}..{days[-1]}")
        # Routed by each day, not by the end of the range: history from the history
        # providers, today's session from the intraday provider.
        history = {s: [d for d in days if d < today] for s, days in plan.items()}
        if context.run.tags.get(MISSING_ONLY_TAG) == "true":
            history = _without_final(conn, history, ids)
        tasks = [HistoryTask(s, ids[s], days) for s, days in history.items() if days]
        if tasks:
            context.log.info(f"history providers: {', '.join(providers)}")
            run = start_history(conn, providers, tasks, extended_hours=pipeline.extended_hours)
            if (first := run.next_provider()) is not None:
                yield dg.Output(run, first.value)
            else:  # everything was stored by an earlier (killed) run: no request
                stored = finish_history(conn, run)
    yield dg.Output(_Plan(plan, ids, providers, pipeline.now()), "plan")
    yield dg.Output(_Fetched(stored), "stored")
    todays = [symbol for symbol, days in plan.items() if today in days]
    if todays:
        yield dg.Output(todays, "tradier")


def _history_op(provider: Provider, *, fallback: bool) -> dg.OpDefinition:
    """One history provider's round, holding its pool. The symbols it could not serve
    (unavailable) go to the next provider's step; the last round's outcomes to the checks."""
    # Dagster names (outputs, pool, resource key) are plain strings.
    key = provider.value
    handoffs = [] if fallback else [p.value for p in HISTORY_PROVIDERS if p != provider]

    @dg.op(
        name=f"m15_{key}_fallback" if fallback else f"m15_{key}",
        pool=key,
        required_resource_keys={key, "warehouse", "pipeline"},
        out={"done": dg.Out(is_required=False), **{p: dg.Out(is_required=False) for p in handoffs}},
    )
    def fetch(context: dg.OpExecutionContext, runs: list[HistoryRun]) -> Iterator[dg.Output[Any]]:
        [run] = runs  # handed over by exactly one upstream step
        resource = getattr(context.resources, key)
        with context.resources.warehouse.connect() as conn, ExitStack() as stack:
            try:
                history_round(
                    conn,
                    run,
                    lambda _: stack.enter_context(resource.history_client()),
                    run_id=context.run.run_id,
                )
            except ProviderError as exc:  # a rejected key: every symbol waits, then fails
                failed = [
                    SymbolIngest(s.result.symbol, s.result.days, error=exc) for s in run.states
                ]
                ids = {s.result.symbol: s.symbol_id for s in run.states}
                record_outcomes(context, conn, failed, ids, context.resources.pipeline)
                raise
            following = run.next_provider()
            if following is None:
                yield dg.Output(_Fetched(finish_history(conn, run)), "done")
        if following is not None:
            yield dg.Output(run, following.value)

    return fetch


@dg.op(pool="tradier")
def m15_tradier(
    context: dg.OpExecutionContext,
    plan: _Plan,
    symbols: list[str],
    tradier: TradierResource,
    warehouse: WarehouseResource,
) -> _Fetched:
    """Today's session of `symbols` from Tradier, holding the `tradier` pool."""
    with ExitStack() as stack:
        try:
            client = stack.enter_context(tradier.today_client())
        except ProviderError as exc:
            if exc.code != PROVIDER_UNAVAILABLE:
                raise
            # Not configured: today's session waits for the history provider.
            context.log.warning(f"today's session skipped: {exc}")
            return _Fetched([], skipped=(Provider.TRADIER,))
        conn = stack.enter_context(warehouse.connect())
        today = calendar.exchange_date(plan.now)
        return _Fetched(
            [
                ingest_today(
                    conn, client, run_id=context.run.run_id, symbol=symbol,
                    symbol_id=plan.ids[symbol], day=today, now=plan.now,
                )
                for symbol in symbols
            ]
        )  # fmt: skip


@dg.op(out={name: dg.Out(dg.Nothing) for name in ["result", *CHECK_OUTPUTS]})
def m15_checks(
    context: dg.OpExecutionContext,
    plan: _Plan,
    fetched: list[_Fetched],
    warehouse: WarehouseResource,
    pipeline: PipelineSettings,
) -> dg.MaterializeResult:
    """Every symbol's outcome recorded, the checks evaluated on what was stored."""
    providers = plan.providers
    results = [r for part in fetched for r in part.results]
    skipped = [p for part in fetched for p in part.skipped]
    with warehouse.connect() as conn:
        record_outcomes(context, conn, results, plan.ids, pipeline)
        failures = {r.symbol: f"[{r.error.code}] {r.error.message}" for r in results if r.error}
        errors = [r.error for r in results if r.error]
        if errors and len(errors) == len(results):  # nothing succeeded: the run fails
            if len(errors) == 1:
                raise errors[0]
            raise ProviderError(
                errors[0].code,
                "every symbol failed: " + "; ".join(f"{s} {m}" for s, m in failures.items()),
                provider=",".join(providers),
            )
        rejected: dict[str, int] = {}
        for result in results:
            merge_counts(rejected, result.rejected)
        checks = [
            *check_m15(conn, plan.days, plan.ids, extended_hours=pipeline.extended_hours),
            check_provider_data(rejected),
            check_fetch_complete(failures),
        ]
        symbol, days = next(iter(plan.days.items()))
        sample = preview(conn, symbol, plan.ids[symbol], Timeframe.M15, days)
    metadata = _metadata(results, providers, skipped)
    return dg.MaterializeResult(metadata={**metadata, "preview": sample}, check_results=checks)


def _without_final(
    conn: psycopg.Connection, history: dict[str, list[date]], ids: dict[str, int]
) -> dict[str, list[date]]:
    """Only the sessions still lacking their final bars (a run over a rectangle of symbols x
    days whose other cells are complete already, like the morning finalize)."""
    days = sorted({d for ds in history.values() for d in ds})
    states = session_states(conn, [ids[s] for s in history], days)
    return {
        symbol: [
            d
            for d in ds
            if not completeness.raw_complete(states[ids[symbol]][d], final_required=True)
        ]
        for symbol, ds in history.items()
    }


def record_outcomes(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    conn: psycopg.Connection,
    results: list[SymbolIngest],
    ids: dict[str, int],
    clock: PipelineClock,
) -> None:
    with conn.transaction():
        parked = record_symbol_outcomes(conn, results, ids, clock.now())
    conn.commit()
    for result in results:
        if result.error:
            context.log.warning(
                f"{result.symbol} failed: [{result.error.code}] {result.error.message}"
            )
    for symbol, reason in parked.items():
        context.log.warning(f"{symbol} parked: {reason}")


def _providers_used(results: list[SymbolIngest], order: tuple[Provider, ...]) -> list[Provider]:
    used = {p for r in results for p in r.providers}
    return [p for p in order if p in used] + sorted(used - set(order))


def _metadata(
    results: list[SymbolIngest], providers: tuple[Provider, ...], skipped: list[Provider]
) -> dict[str, dg.MetadataValue]:
    first = min((r.first_ts for r in results if r.first_ts), default=None)
    last = max((r.last_ts for r in results if r.last_ts), default=None)
    unavailable = sorted({p for r in results for p in r.unavailable}, key=providers.index)
    unavailable += [p for p in skipped if p not in unavailable]
    return {
        "rows": dg.MetadataValue.int(sum(r.bars_written for r in results)),
        "requests": dg.MetadataValue.int(sum(r.stats.requests for r in results)),
        "expected_cost": dg.MetadataValue.int(sum(r.expected_cost for r in results)),
        "retries": dg.MetadataValue.int(sum(r.stats.retries for r in results)),
        "token_wait_s": dg.MetadataValue.float(
            round(sum(r.stats.token_wait_s for r in results), 2)
        ),
        # Providers that actually served bars, the run's order first ("polygon,alpaca" when
        # the fallback took over part of the run).
        "provider": dg.MetadataValue.text(",".join(_providers_used(results, providers))),
        "history_providers": dg.MetadataValue.text(",".join(providers)),
        "fallback_used": dg.MetadataValue.bool(any(r.fallback_used for r in results)),
        "providers_unavailable": dg.MetadataValue.text(",".join(unavailable) or "-"),
        "symbols": dg.MetadataValue.text(",".join(r.symbol for r in results)),
        "failed_symbols": dg.MetadataValue.text(
            ",".join(r.symbol for r in results if r.error) or "-"
        ),
        "sessions": dg.MetadataValue.int(sum(len(r.days) for r in results)),
        "resumed_sessions": dg.MetadataValue.int(sum(r.resumed_days for r in results)),
        "empty_sessions": dg.MetadataValue.int(sum(len(r.empty_days) for r in results)),
        "rejected_bars": dg.MetadataValue.int(sum(r.rejected_total for r in results)),
        "extended_hours_dropped": dg.MetadataValue.int(
            sum(r.cleaning.counts.get("extended_hours", 0) for r in results)
        ),
        "first_bar": dg.MetadataValue.text(first or "-"),
        "last_bar": dg.MetadataValue.text(last or "-"),
    }

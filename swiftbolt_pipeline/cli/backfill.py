"""`swiftbolt backfill`: materialize partitions through Dagster, in process, with progress."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from datetime import date

import click
import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from swiftbolt_pipeline.cli.crypto_backfill import backfill_crypto
from swiftbolt_pipeline.config import parse_day, parse_providers
from swiftbolt_pipeline.core import calendar, crypto_calendar
from swiftbolt_pipeline.core.daily import DAILY_TIMEFRAMES
from swiftbolt_pipeline.core.errors import AUTH_FAILED
from swiftbolt_pipeline.core.models import (
    InvalidInput,
    Provider,
    Timeframe,
    is_crypto,
    normalize_tickers,
    parse_timeframes,
)
from swiftbolt_pipeline.core.planning import symbol_batches
from swiftbolt_pipeline.defs.assets.m5 import m5_run_config
from swiftbolt_pipeline.defs.assets.m15 import plan_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.checks import FETCH_COMPLETE, PROVIDER_DATA
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import (
    BAR_ASSETS,
    CRYPTO_BAR_ASSETS,
    M5_BARS,
    M5_SYMBOLS_PARTITIONS,
    M15_BARS,
    SYMBOLS_PARTITIONS,
)
from swiftbolt_pipeline.providers.registry import history_batch_size, require_credentials
from swiftbolt_pipeline.services.coverage import reap_dead_runs
from swiftbolt_pipeline.services.executor import (
    distributed,
    execute_range,
    max_concurrent_runs,
    open_shared_instance,
    run_pool,
)
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.launch import (
    RunOutcome,
    materialize_range,
    materialize_years,
    register_symbols,
)
from swiftbolt_pipeline.services.m5 import opted_in, require_opted_in
from swiftbolt_pipeline.services.runtime import Runtime, ensure_providers, open_runtime
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import ledger, watchlist

# Every timeframe: a backfill without --timeframes does the complete job.
DEFAULT_TIMEFRAMES = ",".join(BAR_ASSETS)


@click.command()
@click.option("--symbols", required=True, help="Comma-separated tickers, e.g. AAPL,MSFT.")
@click.option("--start", "start_raw", required=True, help="First session, YYYY-MM-DD.")
@click.option("--end", "end_raw", required=True, help="Last session, YYYY-MM-DD.")
@click.option(
    "--timeframes",
    default=DEFAULT_TIMEFRAMES,
    show_default=True,
    help="Timeframes to fill. m15 is fetched and h1/h4 derived from it (no requests) for the "
    "sessions START..END; d1 (the provider's official daily bar, about one request per "
    "symbol) and w1/mo1 (rolled up from d1, no requests) for every session of the calendar "
    "years START..END touches, back to the daily depth (SWIFTBOLT_DAILY_YEARS, 5 by default). "
    "With only daily timeframes, START may reach back to that depth. m5 (5-minute bars, "
    "the m15 requests again) is opt-in: without --timeframes it is filled for the symbols "
    "opted in (`watch add SYM --m5`, or all with SWIFTBOLT_M5=1); asking for m5 of a symbol "
    "not opted in is an error that changes nothing.",
)
@click.option(
    "--provider",
    default=None,
    help="Force one history provider for these runs (polygon or alpaca); default: "
    "SWIFTBOLT_HISTORY_PROVIDERS, primary first with fallback.",
)
def backfill(
    symbols: str, start_raw: str, end_raw: str, timeframes: str, provider: str | None
) -> None:
    """Backfill SYMBOLS from START to END through Dagster, each run covering every session
    of the range. The history provider serving first (--provider, else the first of
    SWIFTBOLT_HISTORY_PROVIDERS) decides the runs: Polygon, one symbol per request, gets one
    run per symbol; Alpaca, 50 symbols per request, one run per batch of up to 50 symbols,
    which share its requests (a batch holds only neighbours among Dagster's symbol
    partitions, kept in the order symbols were first added, so symbols added at different
    times may take more runs)."""
    tickers = normalize_tickers(symbols)
    start, end = parse_day(start_raw, "--start"), parse_day(end_raw, "--end")
    wanted = parse_timeframes(timeframes)
    daily = [tf for tf in wanted if tf in DAILY_TIMEFRAMES]
    intraday = [tf for tf in wanted if tf not in DAILY_TIMEFRAMES and tf != Timeframe.M5]
    forced = _forced_provider(provider)
    runtime = open_runtime()
    pairs = [t for t in tickers if is_crypto(t)]
    if pairs:  # crypto pairs: UTC days on their own assets (cli/crypto_backfill.py)
        if len(pairs) != len(tickers):
            raise InvalidInput(
                "INVALID_SYMBOL",
                "crypto pairs (X:...) and stocks run on different calendars: backfill them "
                "with separate commands",
            )
        unsupported = [tf.value for tf in wanted if tf not in CRYPTO_BAR_ASSETS]
        if unsupported and timeframes != DEFAULT_TIMEFRAMES:
            raise InvalidInput(
                "INVALID_TIMEFRAME",
                f"crypto pairs have no {', '.join(unsupported)} bars "
                f"(they have {', '.join(CRYPTO_BAR_ASSETS)})",
            )
        wanted = [tf for tf in wanted if tf in CRYPTO_BAR_ASSETS]
        utc_today = crypto_calendar.utc_date(runtime.settings.now())
        runtime.settings.check_range(start, end, today=utc_today)
        console = Console(stderr=True, soft_wrap=True)
        started = time.monotonic()
        outcomes = backfill_crypto(runtime, pairs, start, end, wanted, forced, console)
        incomplete = _print_summary(runtime, outcomes, time.monotonic() - started, console)
        if incomplete or not all(o.success for o in outcomes):
            raise SystemExit(1)
        return
    if intraday or Timeframe.M5 in wanted:
        runtime.settings.check_range(start, end)
    else:
        runtime.settings.check_daily_range(start, end)
    with runtime.connect() as conn:
        m5_all = runtime.settings.m5_all
        if Timeframe.M5 in wanted:  # asked for: every symbol must be opted in
            m5_tickers = require_opted_in(conn, tickers, everyone=m5_all)
        elif timeframes == DEFAULT_TIMEFRAMES:  # the complete job: m5 of the opted-in ones
            m5_tickers = opted_in(conn, tickers, everyone=m5_all)
        else:
            m5_tickers = []
    years = list(range(max(start, runtime.settings.daily_start).year, end.year + 1))
    days = calendar.sessions_between(start, end)
    if not days:
        raise InvalidInput("INVALID_RANGE", f"no NYSE sessions between {start} and {end}")
    setup = ensure_providers(runtime)
    source = setup.source
    if forced:
        require_credentials(forced, runtime.settings.credentials(forced))
    providers = (forced,) if forced else runtime.settings.history_providers
    if providers != ("polygon",):
        source = f"{', '.join(providers)}{' (forced)' if forced else ''}; polygon: {source}"
    prepare_dagster_home(runtime.settings)
    defs = build_definitions(runtime.settings)
    selection = [BAR_ASSETS[tf] for tf in intraday]
    daily_selection = [BAR_ASSETS[tf] for tf in daily]
    console = Console(stderr=True, soft_wrap=True)
    for note in setup.notes:
        console.print(note)
    named = [tf.value for tf in wanted if tf != Timeframe.M5]
    if m5_tickers:
        named.append(f"m5 ({', '.join(m5_tickers)})")
    console.print(
        f"Backfilling {', '.join(tickers)}: {len(days)} session(s) {days[0]}..{days[-1]}, "
        f"{', '.join(named)} from {source}"
    )
    # Distributed (SWIFTBOLT_EXECUTOR=celery): the runs go on at once, their steps on the
    # workers of every host; by default, one run after another in this process.
    opener = open_shared_instance if distributed(runtime.settings) else open_instance
    with opener(runtime.settings) as instance:
        # A backfill killed earlier (SIGKILL, lost host) still holds its pool slot: free it,
        # or this one would wait for that slot forever.
        with runtime.connect() as conn:
            for run_id in reap_dead_runs(instance, conn):
                console.print(f"run {run_id} of a dead process marked failed (slot freed)")
        register_symbols(instance, tickers)
        # Several symbols share a run only as neighbours among the symbol partitions: a run
        # covers every partition between its first and last symbol.
        order = instance.get_dynamic_partitions(SYMBOLS_PARTITIONS)
        batches = symbol_batches(order, tickers, history_batch_size(providers[0]))
        # A partition removed meanwhile (the watchlist sensor drops unwatched symbols) is
        # in no batch: it still gets its own run, which says what became of it.
        batches += [[t] for t in tickers if t not in order]
        started = time.monotonic()
        outcomes = []
        if selection:
            outcomes = _run_all(runtime, instance, defs, batches, days, selection, console, forced)
        daily_outcomes = []
        rejected = _rejected(outcomes, providers)
        if daily_selection and rejected:
            # A rejected key is never sent again (no retry of a 401/403), not even for d1.
            console.print(f"d1/w1/mo1 skipped: {', '.join(rejected)} rejected the credentials")
        elif daily_selection:
            daily_outcomes = _run_daily(
                runtime, instance, defs, batches, years, daily_selection, console, forced
            )
        m5_outcomes = []
        if m5_tickers and rejected:
            console.print(f"m5 skipped: {', '.join(rejected)} rejected the credentials")
        elif m5_tickers:
            m5_outcomes = _run_m5(instance, defs, m5_tickers, days, providers, forced)
        elapsed = time.monotonic() - started
    incomplete = _print_summary(runtime, outcomes, elapsed, console) if outcomes else False
    if daily_outcomes:
        _print_daily_summary(runtime, daily_outcomes, console)
    if m5_outcomes:
        incomplete = _print_m5_summary(runtime, m5_outcomes, console) or incomplete
    if incomplete or not all(o.success for o in outcomes + daily_outcomes + m5_outcomes):
        raise SystemExit(1)


def _run_m5(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    tickers: list[str],
    days: list[date],
    providers: Sequence[Provider],
    forced: Provider | None,
) -> list[RunOutcome]:
    """`m5_bars` of the opted-in `tickers`: one run per symbol (per batch of neighbours among
    the `m5_symbols` partitions when the provider serves many per request), in this process."""
    register_symbols(instance, tickers, M5_SYMBOLS_PARTITIONS)
    order = instance.get_dynamic_partitions(M5_SYMBOLS_PARTITIONS)
    log_level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "CRITICAL"
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return [
        materialize_range(
            instance, assets, dict(defs.resources or {}), symbols=batch, days=days,
            selection=[M5_BARS], log_level=log_level,
            run_config=m5_run_config(forced) if forced else None,
        )
        for batch in symbol_batches(order, tickers, history_batch_size(providers[0]))
    ]  # fmt: skip


def _print_m5_summary(runtime: Runtime, outcomes: list[RunOutcome], console: Console) -> bool:
    """One line of what the m5 runs did, then their failures; True when a symbol failed."""
    with runtime.connect() as conn:
        cost = ledger.run_cost(conn, [o.run_id for o in outcomes])
    console.print(
        f"m5: {len(outcomes)} run(s), {sum(o.partitions for o in outcomes)} partition(s), "
        f"{cost.rows_written} m5 bars written, {cost.actual_cost} request(s) "
        f"({cost.expected_cost} planned)."
    )
    failed = False
    for outcome in outcomes:
        if not outcome.success:
            failed = True
            console.print(
                f"[red]FAILED[/red] m5 {','.join(outcome.symbols)} (run {outcome.run_id}): "
                f"{outcome.error}"
            )
        for check in outcome.checks:
            if check.name == FETCH_COMPLETE and not check.passed:
                failed = True
                console.print(f"[red]FAILED[/red] m5: {check.metadata.get('failures')}")
            elif check.name != FETCH_COMPLETE and not check.passed:
                console.print(
                    f"[red]CHECK FAILED[/red] {check.asset}:{check.name} {check.metadata}"
                )
    return failed


def _rejected(outcomes: list[RunOutcome], providers: Sequence[Provider]) -> list[str]:
    """The history providers that answered these runs with AUTH_FAILED."""
    errors = [o.error for o in outcomes if o.error]
    return [p.value for p in providers if any(f"[{AUTH_FAILED}] {p.value}:" in e for e in errors)]


def _run_daily(
    runtime: Runtime,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    batches: list[list[str]],
    years: list[int],
    selection: list[str],
    console: Console,
    provider: Provider | None,
) -> list[RunOutcome]:
    """One run per batch over the year partitions `years` of the daily assets."""
    log_level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "CRITICAL"
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources = dict(defs.resources or {})
    if provider is not None:
        pipeline = resources["pipeline"]
        assert isinstance(pipeline, PipelineSettings)
        resources["pipeline"] = PipelineSettings(
            **{**pipeline.model_dump(), "history_providers": [provider.value]}
        )
    outcomes: list[RunOutcome] = []
    with runtime.connect() as conn:
        watchlist.ensure(conn, [t for batch in batches for t in batch])
        conn.commit()
    for batch in batches:
        console.print(
            f"{','.join(batch)}: {', '.join(selection)} for {years[0]}..{years[-1]} "
            f"({len(years)} year partition(s))"
        )
        outcomes.append(
            materialize_years(
                instance,
                assets,
                resources,
                symbols=batch,
                years=years,
                selection=selection,
                log_level=log_level,
            )
        )
    return outcomes


def _print_daily_summary(runtime: Runtime, outcomes: list[RunOutcome], console: Console) -> None:
    with runtime.connect() as conn:
        cost = ledger.run_cost(conn, [o.run_id for o in outcomes])
    partitions = sum(o.partitions for o in outcomes)
    console.print(
        f"Daily: {len(outcomes)} run(s), {partitions} year partition(s), "
        f"{cost.rows_written} d1 bars written, {cost.actual_cost} request(s)."
    )
    for outcome in outcomes:
        if not outcome.success:
            console.print(
                f"[red]FAILED[/red] {','.join(outcome.symbols)} (run {outcome.run_id}): "
                f"{outcome.error}"
            )
        for check in outcome.checks:
            if not check.passed:
                console.print(
                    f"[red]CHECK FAILED[/red] {check.asset}:{check.name} {check.metadata}"
                )


def _run_all(
    runtime: Runtime,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    batches: list[list[str]],
    days: list[date],
    selection: list[str],
    console: Console,
    provider: Provider | None,
) -> list[RunOutcome]:
    # Quiet unless -v: a failure is summarized in one line below, without Dagster's stack trace.
    log_level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "CRITICAL"
    forced = plan_run_config(provider) if provider and M15_BARS in selection else None
    pool: Executor
    if distributed(runtime.settings):
        run_batch = functools.partial(
            execute_range, runtime.settings,
            selection=selection, run_config=forced, log_level=log_level,
        )  # fmt: skip
        pool = run_pool(min(len(batches), max_concurrent_runs(instance)))
    else:
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
        run_batch = functools.partial(
            materialize_range, instance, assets, dict(defs.resources or {}),
            selection=selection, log_level=log_level, run_config=forced,
        )  # fmt: skip
        pool = ThreadPoolExecutor(max_workers=1)
    with runtime.connect() as conn:
        ids = watchlist.ensure(conn, [t for batch in batches for t in batch])
        conn.commit()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sessions"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress, pool:
            tasks = {t: progress.add_task(t, total=len(days)) for batch in batches for t in batch}
            futures: list[Future[RunOutcome]] = [
                pool.submit(run_batch, symbols=batch, days=days) for batch in batches
            ]
            while wait(futures, timeout=0.5).not_done:
                done = bar_store.sessions_with_bars_many(
                    conn, list(ids.values()), Timeframe.M15, days[0], days[-1]
                )
                conn.commit()
                for ticker, task in tasks.items():
                    progress.update(task, completed=len(done[ids[ticker]]))
            outcomes = [future.result() for future in futures]
            for outcome in outcomes:
                if outcome.success:
                    for ticker in outcome.symbols:
                        progress.update(tasks[ticker], completed=len(days))
    return outcomes


def _forced_provider(raw: str | None) -> Provider | None:
    """`--provider NAME`: exactly one known history provider, or None (use the configuration)."""
    return None if raw is None else parse_providers(raw, single="--provider")[0]


def _print_summary(
    runtime: Runtime, outcomes: list[RunOutcome], elapsed: float, console: Console
) -> bool:
    """Print what the runs did; True when some symbol's fetch failed inside a run that
    succeeded for the others (its partitions failed all the same)."""
    with runtime.connect() as conn:
        cost = ledger.run_cost(conn, [o.run_id for o in outcomes])
    failed = [o for o in outcomes if not o.success]
    partitions = sum(o.partitions for o in outcomes)
    console.print(
        f"Done in {elapsed:.1f}s: {len(outcomes)} run(s), {partitions} partition(s), "
        f"{cost.rows_written} m15 bars written, {cost.actual_cost} request(s) "
        f"({cost.expected_cost} planned)."
    )
    for outcome in failed:
        symbols = ",".join(outcome.symbols)
        console.print(f"[red]FAILED[/red] {symbols} (run {outcome.run_id}): {outcome.error}")
    checks = [check for outcome in outcomes for check in outcome.checks]
    fetch_failures = {
        symbol: message
        for check in checks
        if check.name == FETCH_COMPLETE and not check.passed
        and isinstance(failures := check.metadata.get("failures"), dict)
        for symbol, message in failures.items()
    }  # fmt: skip
    for symbol, message in fetch_failures.items():
        console.print(f"[red]FAILED[/red] {symbol}: {message}")
    # Rejected provider bars are a warning with its own line, not a failed check.
    data = [check for check in checks if check.name == PROVIDER_DATA]
    hard = [check for check in checks if check.name not in (PROVIDER_DATA, FETCH_COMPLETE)]
    failed_checks = [check for check in hard if not check.passed]
    console.print(
        f"Asset checks: {len(hard) - len(failed_checks)} passed, {len(failed_checks)} failed."
    )
    for check in failed_checks:
        console.print(f"[red]CHECK FAILED[/red] {check.asset}:{check.name} {check.metadata}")
    rejected = {
        key.removeprefix("rejected_"): value
        for check in data
        for key, value in check.metadata.items()
        if key.startswith("rejected_")
        and key != "rejected_bars"
        and isinstance(value, int)
        and value
    }
    if rejected:
        detail = ", ".join(f"{rule}={count}" for rule, count in sorted(rejected.items()))
        console.print(
            f"{sum(rejected.values())} bar(s) of bad provider data rejected ({detail}); "
            "their intervals stay empty."
        )
    empty = sum(
        value
        for check in checks
        if check.asset == M15_BARS
        and isinstance(value := check.metadata.get("sessions_with_empty_intervals"), int)
    )
    if empty:
        console.print(f"{empty} session(s) have 15-minute intervals without trades (not filled).")
    return bool(fetch_failures)

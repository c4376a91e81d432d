"""`swiftbolt universe`: named symbol lists backfilled with one partition per universe x day."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import dagster as dg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from swiftbolt_pipeline.config import parse_day, parse_providers
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.daily import ROLLUP_TIMEFRAMES
from swiftbolt_pipeline.core.models import InvalidInput, Provider, normalize_tickers
from swiftbolt_pipeline.core.planning import plan_requests
from swiftbolt_pipeline.core.universe import (
    equities_only,
    normalize_universe_name,
    parse_ticker_lines,
)
from swiftbolt_pipeline.defs.assets.universe import universe_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.ingest.universe_daily import plan_sources
from swiftbolt_pipeline.names import (
    UNIVERSE_ASSETS,
    UNIVERSE_D1_BARS,
    UNIVERSE_DERIVED_BARS,
    UNIVERSE_M15_BARS,
    UNIVERSE_TAG,
)
from swiftbolt_pipeline.providers.registry import require_credentials
from swiftbolt_pipeline.services.coverage import reap_dead_runs
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.runtime import Runtime, ensure_providers, open_runtime
from swiftbolt_pipeline.services.universe import (
    UniverseOutcome,
    materialize_universe,
    register_universe,
)
from swiftbolt_pipeline.storage import ledger, universes


@click.group()
def universe() -> None:
    """Universes: named symbol lists for market-wide backfills (beside the watchlist)."""


@universe.command("set")
@click.argument("name")
@click.option("--symbols", default=None, help="Comma-separated tickers, e.g. AAPL,MSFT.")
@click.option(
    "--file",
    "path",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file with one ticker per line.",
)
def universe_set(name: str, symbols: str | None, path: Path | None) -> None:
    """Create universe NAME or replace its members (they do not join the watchlist)."""
    if (symbols is None) == (path is None):
        raise click.UsageError("give exactly one of --symbols and --file")
    universe_name = normalize_universe_name(name)
    if path is not None:
        tickers = parse_ticker_lines(path.read_text(errors="replace"), source=str(path))
    else:
        tickers = normalize_tickers(symbols or "")
    equities_only(tickers)
    runtime = open_runtime()
    with runtime.connect() as conn:
        change = universes.set_members(conn, universe_name, tickers)
    # Its partitions show in the UI right away (a backfill would add it too).
    prepare_dagster_home(runtime.settings)
    with open_instance(runtime.settings) as instance:
        register_universe(instance, universe_name)
    click.echo(
        f"universe {universe_name}: {change.members} member(s) "
        f"({change.added} added, {change.removed} removed)"
    )


@universe.command("list")
def universe_list() -> None:
    """List the universes and their member counts."""
    with open_runtime().connect() as conn:
        rows = universes.list_universes(conn)
    if not rows:
        click.echo("no universes; create one with `swiftbolt universe set NAME --symbols A,B`")
        return
    click.echo(f"{'universe':<20} {'members':>8} {'failing':>8}  updated")
    for row in rows:
        click.echo(
            f"{row.name:<20} {row.members:>8} {row.failing:>8}  {row.updated_at:%Y-%m-%d %H:%M}"
        )


@universe.command("backfill")
@click.argument("name")
@click.option("--start", "start_raw", required=True, help="First session, YYYY-MM-DD.")
@click.option("--end", "end_raw", required=True, help="Last session, YYYY-MM-DD.")
@click.option(
    "--provider",
    default=None,
    help="Force one history provider (polygon or alpaca); default: "
    "SWIFTBOLT_HISTORY_PROVIDERS, primary first with fallback.",
)
def universe_backfill(name: str, start_raw: str, end_raw: str, provider: str | None) -> None:
    """Backfill every member of NAME from START to END (m15, then h1/h4, and the official
    d1) in one Dagster run over the universe's day partitions."""
    universe_name = normalize_universe_name(name)
    start, end = parse_day(start_raw, "--start"), parse_day(end_raw, "--end")
    forced = None if provider is None else parse_providers(provider, single="--provider")[0]
    runtime = open_runtime()
    runtime.settings.check_range(start, end)
    days = calendar.sessions_between(start, end)
    if not days:
        raise InvalidInput("INVALID_RANGE", f"no NYSE sessions between {start} and {end}")
    with runtime.connect() as conn:
        members = universes.members(conn, universe_name)
    setup = ensure_providers(runtime)
    if forced:
        require_credentials(forced, runtime.settings.credentials(forced))
    providers = (forced,) if forced else runtime.settings.history_providers
    prepare_dagster_home(runtime.settings)
    defs = build_definitions(runtime.settings)
    console = Console(stderr=True, soft_wrap=True)
    for note in setup.notes:
        console.print(note)
    console.print(
        f"Backfilling universe {universe_name}: {len(members)} member(s), {len(days)} "
        f"session(s) {days[0]}..{days[-1]}, m15 + h1/h4 + d1 + w1/mo1 from {', '.join(providers)}"
        f"{' (forced)' if forced else ''}"
    )
    with open_instance(runtime.settings) as instance:
        with runtime.connect() as conn:
            for run_id in reap_dead_runs(instance, conn):
                console.print(f"run {run_id} of a dead process marked failed (slot freed)")
        register_universe(instance, universe_name)
        started = time.monotonic()
        outcome = _run(runtime, instance, defs, universe_name, members, days, console, forced)
        elapsed = time.monotonic() - started
    if not _print_summary(runtime, outcome, len(members), elapsed, console):
        raise SystemExit(1)


def _run(
    runtime: Runtime,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    name: str,
    members: dict[str, int],
    days: list[date],
    console: Console,
    forced: str | None,
) -> UniverseOutcome:
    """The one run, with a progress bar over the ledger's request windows: m15 member windows
    (about 50 sessions of one member each), then the planned d1 requests."""
    log_level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "CRITICAL"
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    past = [d for d in days if d < runtime.settings.today]
    over = [d for d in days if d < runtime.settings.today]
    providers = (Provider(forced),) if forced else runtime.settings.history_providers
    d1_plan = plan_sources(providers, len(members), len(over))
    total = len(members) * len(plan_requests(past)) + (d1_plan[0].requests if d1_plan else 0)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("member-windows"),
        TimeElapsedColumn(),
    )
    launched = datetime.now(UTC) - timedelta(seconds=5)  # a margin for clock skew
    run_id: str | None = None
    run_config = universe_run_config(forced, UNIVERSE_ASSETS) if forced else None
    with (
        runtime.connect() as conn,
        Progress(*columns, console=console) as progress,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        task = progress.add_task(name, total=total)
        future = pool.submit(
            materialize_universe,
            instance, assets, dict(defs.resources or {}), universe=name, days=days,
            log_level=log_level, run_config=run_config,
        )  # fmt: skip
        while not wait([future], timeout=1.0).done:
            if run_id is None:
                found = instance.get_runs(
                    dg.RunsFilter(tags={UNIVERSE_TAG: name}, created_after=launched), limit=1
                )
                run_id = found[0].run_id if found else None
            if run_id is not None:
                progress.update(task, completed=universes.windows_done(conn, run_id))
                conn.commit()
        outcome = future.result()
        if outcome.success:
            progress.update(task, completed=total)
    return outcome


def _print_summary(
    runtime: Runtime, outcome: UniverseOutcome, members: int, elapsed: float, console: Console
) -> bool:
    """Print what the run did; True when it succeeded for every member."""
    with runtime.connect() as conn:
        cost = ledger.run_cost(conn, [outcome.run_id])
    fetched = outcome.metadata.get(UNIVERSE_M15_BARS, {})
    derived = outcome.metadata.get(UNIVERSE_DERIVED_BARS, {})
    daily = outcome.metadata.get(UNIVERSE_D1_BARS, {})
    rolled = sum(int(str(daily.get(f"{tf.value}_rows", 0))) for tf in ROLLUP_TIMEFRAMES)
    console.print(
        f"Done in {elapsed:.1f}s: 1 run, {outcome.partitions} day partition(s) x "
        f"{len(UNIVERSE_ASSETS)} asset(s), {members} member(s), {fetched.get('rows', 0)} m15, "
        f"{derived.get('rows', 0)} h1/h4, {daily.get('rows', 0)} d1 and {rolled} w1/mo1 bars "
        f"written, "
        f"{cost.actual_cost} request(s): m15 {fetched.get('requests', 0)} "
        f"({fetched.get('expected_cost', 0)} planned), d1 {daily.get('requests', 0)} "
        f"({daily.get('planned_requests', 0)} planned, {daily.get('source', '-')})."
    )
    if resumed := fetched.get("resumed_sessions", 0):
        console.print(f"{resumed} member-session(s) were stored by an earlier run (no request).")
    if not outcome.success:
        console.print(f"[red]FAILED[/red] run {outcome.run_id}: {outcome.error}")
        return False
    failed = 0
    for what, metadata in (("m15", fetched), ("d1", daily)):
        if count := int(str(metadata.get("failed_symbols", 0))):
            failed += count
            console.print(
                f"[red]FAILED[/red] {what} of {count} member(s): "
                f"{metadata.get('failures_by_code')} (e.g. {metadata.get('failed_sample')}); "
                "other members are unaffected"
            )
    return not failed

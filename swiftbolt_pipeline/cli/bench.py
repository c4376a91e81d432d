"""`swiftbolt bench`: the benchmark report, thin over `swiftbolt_pipeline.bench`."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from swiftbolt_pipeline.bench.market import MarketSizes


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench"),
    show_default=True,
    help="Where report.md and report.json go.",
)
@click.option("--quick", is_flag=True, help="Tiny sizes: checks the harness in seconds.")
@click.option(
    "--profile",
    "profile_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also profile the one-symbol backfill with pyinstrument into this folder.",
)
@click.option(
    "--growth-rows",
    type=click.IntRange(min=10_000),
    default=None,
    help="Instead of the report: fill a scratch ohlc_bars_v2 to this many synthetic rows "
    "(100000000 is a market's archive: ~15 GB of disk, ~15 min) and time the chart and "
    "coverage queries as it grows; writes OUT/growth.md, growth.json and growth-plans.txt.",
)
@click.option(
    "--hosts",
    "host_counts",
    default=None,
    help="Instead of the report: the same distributed backfill (SWIFTBOLT_EXECUTOR=celery) "
    "with each number of worker hosts, e.g. 1,2,4 (hosts are network namespaces: needs root, "
    "RabbitMQ and Redis here, and DATABASE_URL); writes OUT/hosts.md and hosts.json.",
)
@click.option(
    "--ui-symbols",
    type=str,
    default=None,
    metavar="N[,N...]",
    help="Instead of the report: time the Dagster UI's asset catalog, universe_m15_bars and "
    "m15_bars partitions and m15_bars overview pages in headless Chromium, with a universe of "
    "each N members (one partition per universe x session) beside a watchlist "
    "(--ui-watchlist); writes OUT/ui-scale.md and ui-scale.json.",
)
@click.option(
    "--ui-watchlist",
    type=str,
    default="100",
    show_default=True,
    metavar="N[,N...]",
    help="With --ui-symbols: watchlist sizes (symbol x session partitions), each its own "
    "seeded scratch instance with the universes.",
)
@click.option(
    "--ui-loads",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    default=(2, 3),
    show_default=True,
    metavar="COLD WARM",
    help="With --ui-symbols: page loads timed per page, cold and warm.",
)
@click.option(
    "--market-symbols",
    type=click.IntRange(min=1),
    default=None,
    help="Instead of the report: universe backfills through Alpaca batches against the emulator "
    "in its own process: this many symbols at the free plan's rate (requests vs floor, wall "
    "time vs requests/rate, Dagster events per symbol-session), then the paid-plan throughput "
    "and memory runs; writes OUT/market-scale.md and market-scale.json. With --quick: tiny sizes.",
)
@click.option(
    "--market-sessions",
    type=click.IntRange(min=1, max=501),
    default=501,
    show_default=True,
    help="With --market-symbols: the latest N sessions (501 = two years).",
)
@click.option(
    "--market-rate",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="With --market-symbols: requests per minute of the rate-limited run (Alpaca's free plan).",
)
@click.option(
    "--paid-symbols",
    type=click.IntRange(min=2),
    default=200,
    show_default=True,
    help="With --market-symbols: symbols of the paid-plan (100 requests/s) throughput run; a "
    "run with half of them (at least 10) is the memory reference.",
)
def bench(
    out_dir: Path,
    quick: bool,
    profile_dir: Path | None,
    growth_rows: int | None,
    host_counts: str | None,
    ui_symbols: str | None,
    ui_watchlist: str,
    ui_loads: tuple[int, int],
    market_symbols: int | None,
    market_sessions: int,
    market_rate: int,
    paid_symbols: int,
) -> None:
    """Measure the pipeline against the old system and the physical limits; print the table
    and write OUT/report.md and OUT/report.json."""
    from swiftbolt_pipeline.bench import BenchSizes, render_table, run_bench, write_report

    console = Console(stderr=True)
    if host_counts is not None:
        from swiftbolt_pipeline.bench.hosts import parse_counts, run_hosts

        counts = parse_counts(host_counts)
        console.print(f"Backfilling with {', '.join(map(str, counts))} worker host(s)...")
        hosts = run_hosts(counts, progress=lambda line: console.print(f"  {line}"))
        render_table(hosts, Console(width=None if sys.stdout.isatty() else 180))
        md, js = write_report(hosts, out_dir, stem="hosts")
        console.print(f"Done in {hosts.wall_s:.0f} s: {md}, {js}")
        return
    if market_symbols is not None:
        from swiftbolt_pipeline.bench.market import MarketSizes

        sizes = (
            MarketSizes.quick()
            if quick
            else MarketSizes(
                symbols=market_symbols,
                sessions=market_sessions,
                rate_per_min=market_rate,
                paid_symbols=paid_symbols,
                memory_symbols=max(10, paid_symbols // 2),
            )
        )
        _market_bench(sizes, out_dir, console)
        return
    if ui_symbols is not None:
        sizes = _sizes(ui_symbols, "--ui-symbols"), _sizes(ui_watchlist, "--ui-watchlist")
        _ui_bench(*sizes, ui_loads, out_dir, console)
        return
    if growth_rows is not None:
        from swiftbolt_pipeline.bench.growth import run_growth, write_plans

        console.print(f"Filling a scratch archive to {growth_rows:,} rows...")
        growth, plans = run_growth(growth_rows, progress=lambda line: console.print(f"  {line}"))
        render_table(growth, Console(width=None if sys.stdout.isatty() else 180))
        md, js = write_report(growth, out_dir, stem="growth")
        console.print(f"Done in {growth.wall_s:.0f} s: {md}, {js}, {write_plans(plans, out_dir)}")
        if any(r.met is False for r in growth.rows):
            raise SystemExit(1)
        return
    sizes = BenchSizes.tiny() if quick else BenchSizes.full()
    console.print(
        "Benchmarking with its own PostgreSQL, emulator and Dagster instance"
        f"{' (quick sizes)' if quick else ''}..."
    )
    report = run_bench(
        sizes,
        progress=lambda name: console.print(f"  measuring {name}..."),
        profile_dir=profile_dir,
    )
    # Wide enough for the table when piped (make bench | tee ...).
    render_table(report, Console(width=None if sys.stdout.isatty() else 180))
    md, js = write_report(report, out_dir)
    missed = [r for r in report.rows if r.met is False]
    bad = [r for r in report.rows if not r.skipped and not math.isfinite(r.ratio)]
    console.print(
        f"Done in {report.wall_s:.0f} s: {md} and {js}; "
        f"{sum(1 for r in report.rows if r.met)} target(s) met, {len(missed)} missed."
    )
    for row in bad:
        console.print(f"[yellow]no finite ratio for {row.section} {row.metric}[/yellow]")


def _sizes(raw: str, option: str) -> list[int]:
    try:
        sizes = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(
            f"expected positive symbol counts separated by commas, got {raw!r}",
            param_hint=option,
        )
    return sizes


def _ui_bench(
    universes: list[int],
    watchlists: list[int],
    loads: tuple[int, int],
    out_dir: Path,
    console: Console,
) -> None:
    from swiftbolt_pipeline.bench import render_table, write_report
    from swiftbolt_pipeline.bench.ui import run_ui_bench

    console.print(
        f"Timing the Dagster UI with universes of {', '.join(f'{n:,}' for n in universes)} "
        f"members and watchlists of {', '.join(f'{n:,}' for n in watchlists)} symbols..."
    )
    report = run_ui_bench(
        universes,
        watchlists,
        cold_loads=loads[0],
        warm_loads=loads[1],
        progress=lambda line: console.print(f"  {line}"),
    )
    render_table(report, Console(width=None if sys.stdout.isatty() else 180))
    md, js = write_report(report, out_dir, stem="ui-scale")
    console.print(f"Done in {report.wall_s:.0f} s: {md}, {js}")
    if any(r.met is False for r in report.rows):
        raise SystemExit(1)


def _market_bench(sizes: MarketSizes, out_dir: Path, console: Console) -> None:
    from swiftbolt_pipeline.bench import render_table, write_report
    from swiftbolt_pipeline.bench.market import run_market

    console.print(
        f"Universe backfills: {sizes.symbols:,} symbols x {sizes.sessions} sessions at "
        f"{sizes.rate_per_min}/min, then {sizes.paid_symbols:,} at {sizes.paid_rate_per_s}/s..."
    )
    report = run_market(sizes, progress=lambda line: console.print(f"  {line}"))
    render_table(report, Console(width=None if sys.stdout.isatty() else 180))
    md, js = write_report(report, out_dir, stem="market-scale")
    console.print(f"Done in {report.wall_s:.0f} s: {md}, {js}")
    if any(r.met is False for r in report.rows):
        raise SystemExit(1)

"""`swiftbolt bench`: the benchmark report, thin over `swiftbolt_pipeline.bench`."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click
from rich.console import Console


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
def bench(
    out_dir: Path,
    quick: bool,
    profile_dir: Path | None,
    growth_rows: int | None,
    host_counts: str | None,
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

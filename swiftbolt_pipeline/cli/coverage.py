"""`swiftbolt coverage`: a symbol's coverage report, optionally requesting the backfill."""

from __future__ import annotations

import json

import click

from swiftbolt_pipeline.core.models import normalize_ticker
from swiftbolt_pipeline.services.coverage import Coverage
from swiftbolt_pipeline.services.ensure import parse_timeframe, symbol_coverage
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.runtime import open_runtime
from swiftbolt_pipeline.storage.watchlist import MAX_WINDOW_DAYS


@click.command()
@click.argument("ticker")
@click.option("--timeframe", default="h1", show_default=True, help="m15, h1, h4, d1, w1 or mo1")
@click.option("--window-days", type=click.IntRange(1, MAX_WINDOW_DAYS), default=None,
              help="Calendar days back from today (default: the symbol's, else 730).")  # fmt: skip
@click.option("--ensure", is_flag=True, help="Also request the missing backfill.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def coverage(
    ticker: str, timeframe: str, window_days: int | None, ensure: bool, as_json: bool
) -> None:
    """Coverage of TICKER's window: status, backfill progress and gaps."""
    symbol = normalize_ticker(ticker)
    frame = parse_timeframe(timeframe)
    runtime = open_runtime()
    prepare_dagster_home(runtime.settings)
    with runtime.connect() as conn, open_instance(runtime.settings) as instance:
        report = symbol_coverage(
            conn,
            instance,
            runtime.settings,
            symbol=symbol,
            timeframe=frame,
            window_days=window_days,
            ensure=ensure,
        )
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        _print_human(report, ensure)


def _print_human(report: Coverage, ensured: bool) -> None:
    data = report.to_json()
    progress = data["backfill_progress"]
    assert isinstance(progress, dict)
    click.echo(
        f"{report.symbol} {report.timeframe.value} over {report.window_days} days: "
        f"{data['status']} — {progress['completed_slices']}/{progress['total_slices']} sessions "
        f"({progress['progress_percent']}%), {progress['bars_written']} bars; "
        f"{progress['running_slices']} running, {progress['queued_slices']} queued"
    )
    for gap in report.gaps:
        click.echo(f"  gap {gap.start} .. {gap.end} ({gap.sessions} sessions)")
    if ensured and report.gaps:
        click.echo("requested: the coverage_gap_sensor backfills these ranges (`swiftbolt dev`).")

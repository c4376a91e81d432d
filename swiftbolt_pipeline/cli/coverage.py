"""`swiftbolt coverage`: the coverage report of design §7, optionally requesting the backfill."""

from __future__ import annotations

import json

import click
import dagster as dg

from swiftbolt_pipeline.cli.runtime import open_runtime, prepare_dagster_home
from swiftbolt_pipeline.core.models import InvalidInput, normalize_ticker, parse_timeframes
from swiftbolt_pipeline.defs.coverage import Coverage, coverage_report
from swiftbolt_pipeline.storage import watchlist


@click.command()
@click.argument("ticker")
@click.option("--timeframe", default="h1", show_default=True, help="m15, h1, h4 or d1")
@click.option("--window-days", type=click.IntRange(min=1), default=None,
              help="Calendar days back from today (default: the symbol's, else 730).")  # fmt: skip
@click.option("--ensure", is_flag=True, help="Also request the missing backfill.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON object of design §7.")
def coverage(
    ticker: str, timeframe: str, window_days: int | None, ensure: bool, as_json: bool
) -> None:
    """Coverage of TICKER's window: status, backfill progress and gaps."""
    symbol = normalize_ticker(ticker)
    frames = parse_timeframes(timeframe)
    if len(frames) != 1:
        raise InvalidInput("INVALID_TIMEFRAME", "give exactly one timeframe")
    runtime = open_runtime()
    prepare_dagster_home(runtime)
    with runtime.connect() as conn, dg.DagsterInstance.get() as instance:
        known = {s.ticker: s for s in watchlist.list_symbols(conn, active_only=False)}
        current = known.get(symbol)
        window = window_days or (current.window_days if current else 730)
        symbol_id = current.id if current else None
        if ensure:
            # The coverage_gap_sensor launches the backfill of every watched symbol's gaps; a
            # wider window than the watchlist's widens what it fills.
            (added,) = watchlist.add(
                conn,
                [symbol],
                window_days=max(
                    window, current.window_days if current and current.is_active else 0
                ),
                priority=current.priority if current else 0,
            )
            symbol_id = added.id
        report = coverage_report(
            conn,
            instance,
            runtime.settings,
            symbol=symbol,
            symbol_id=symbol_id,
            timeframe=frames[0],
            window_days=window,
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

"""`swiftbolt soak`: run the operations simulation and print its audit (exit 1 on failure)."""

from __future__ import annotations

import logging
import sys

import click

from swiftbolt_pipeline.config import parse_day
from swiftbolt_pipeline.soak.audit import format_report
from swiftbolt_pipeline.soak.plan import build_plan

# A fixed default, so a run reproduces exactly: 20 sessions from here cross Thanksgiving and
# the early close after it.
DEFAULT_START = "2026-11-02"


@click.command()
@click.option("--sessions", default=20, show_default=True, type=click.IntRange(min=3))
@click.option("--symbols", default=20, show_default=True, type=click.IntRange(min=7))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--start",
    default=DEFAULT_START,
    show_default=True,
    help="First simulated session (the first session on or after this date), YYYY-MM-DD.",
)
@click.option(
    "--intraday-every",
    default=15,
    show_default=True,
    type=click.Choice(["15", "30", "60"]),
    help="Minutes between intraday ticks (the schedule's cron is 15).",
)
def soak(sessions: int, symbols: int, seed: int, start: str, intraday_every: str) -> None:
    """Simulate SESSIONS sessions of the daemon with a chaos plan, then audit the archive."""
    from swiftbolt_pipeline.soak.runner import Simulation

    # Sensor ticks and failed runs are summarised per tick and in the audit, not logged.
    logging.getLogger("dagster").setLevel(logging.CRITICAL)

    plan = build_plan(
        parse_day(start, "--start"),
        sessions=sessions,
        symbols=symbols,
        seed=seed,
        intraday_every_min=int(intraday_every),
    )
    click.echo(
        f"soak: {len(plan.sessions)} sessions {plan.sessions[0]}..{plan.sessions[-1]}, "
        f"{len(plan.symbols)} symbols, seed {seed}",
        err=True,
    )
    for symbol in plan.symbols:
        click.echo(f"  {symbol.ticker:<6} {symbol.role:<9} window {symbol.window_days}d", err=True)
    simulation = Simulation(plan, log=lambda line: click.echo(line, err=True))
    report = simulation.run()
    click.echo("\nevents:")
    for line in simulation.tally.events:
        click.echo(f"  {line}")
    click.echo(
        f"runs: {simulation.tally.runs} ({simulation.tally.failed} failed, "
        f"{simulation.tally.skipped_run_keys} skipped by run key)\n"
    )
    click.echo(format_report(report))
    sys.exit(0 if report.passed else 1)

"""`swiftbolt status`: watchlist coverage at a glance, one row and one bar per symbol, and a line
per symbol with stored dividends.

A thin view over `services.coverage.coverage_report` (the same numbers as `swiftbolt coverage`
and the HTTP API), the watchlist and the stored dividends; it computes nothing of its own."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import click
import dagster as dg
import psycopg
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.services.coverage import (
    Coverage,
    InflightRange,
    coverage_report,
    inflight_ranges,
)
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.runtime import open_runtime
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import ledger, watchlist
from swiftbolt_pipeline.storage.dividends import DividendSummary, summaries
from swiftbolt_pipeline.storage.watchlist import WatchedSymbol

BAR_WIDTH = 20
NARROW_BAR_WIDTH = 10  # under 100 columns


@dataclass(frozen=True)
class SymbolStatus:
    symbol: WatchedSymbol
    m15: Coverage
    d1: Coverage
    last_bar: datetime | None
    runs_running: int
    runs_queued: int
    dividends: DividendSummary | None

    def to_json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol.ticker,
            "window_days": self.symbol.window_days,
            "priority": self.symbol.priority,
            "m15": _summary(self.m15),
            "d1": _summary(self.d1),
            "last_bar": self.last_bar.isoformat() if self.last_bar else None,
            "gaps": len(self.m15.gaps),
            "runs_in_flight": {"running": self.runs_running, "queued": self.runs_queued},
            "dividends": _dividends_json(self.dividends),
        }


def _dividends_json(summary: DividendSummary | None) -> dict[str, object]:
    if summary is None:
        return {"count": 0, "last_ex_date": None, "last_cash_amount": None, "currency": None}
    return {
        "count": summary.count,
        "last_ex_date": summary.last_ex_date.isoformat(),
        "last_cash_amount": float(summary.last_cash_amount),
        "currency": summary.currency,
    }


def _summary(report: Coverage) -> dict[str, object]:
    """The `coverage --json` fields that matter at a glance."""
    data = report.to_json()
    progress = data["backfill_progress"]
    assert isinstance(progress, dict)
    return {
        "status": data["status"],
        "covered_sessions": progress["completed_slices"],
        "expected_sessions": progress["total_slices"],
        "progress_percent": progress["progress_percent"],
        "bars": progress["bars_written"],
        "gaps": len(report.gaps),
    }


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include removed symbols.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per symbol, in a list.")
def status(show_all: bool, as_json: bool) -> None:
    """Watchlist coverage per symbol: sessions covered, last bar, gaps, runs in flight."""
    runtime = open_runtime()
    prepare_dagster_home(runtime.settings)
    with runtime.connect() as conn, open_instance(runtime.settings) as instance:
        # Fetches of processes that died mid-run would otherwise read `running` forever.
        abandoned = ledger.abandon_orphans(conn)
        symbols = watchlist.list_symbols(conn, active_only=not show_all)
        parked = watchlist.parked(conn)
        inflight = inflight_ranges(instance)
        dividends = summaries(conn)
        rows = [
            _status_of(conn, instance, runtime.settings, s, inflight, dividends.get(s.ticker))
            for s in symbols
        ]
    if as_json:
        click.echo(json.dumps([row.to_json() for row in rows]))
        return
    if abandoned:
        click.echo(
            f"Ledger: marked {abandoned} fetch(es) abandoned (their process ended mid-fetch)."
        )
    if rows:
        _print_table(runtime.settings, rows, inflight)
    elif not parked:
        click.echo("the watchlist is empty; add symbols with `swiftbolt watch add AAPL`")
    for symbol in parked:
        click.echo(
            f"Parked {symbol.ticker} since {symbol.parked_at:%Y-%m-%d %H:%M}: "
            f"{symbol.parked_reason} (`swiftbolt watch add {symbol.ticker}` resumes it)"
        )


def _status_of(
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    settings: Settings,
    symbol: WatchedSymbol,
    inflight: list[InflightRange],
    dividends: DividendSummary | None,
) -> SymbolStatus:
    m15, d1 = (
        coverage_report(
            conn,
            instance,
            settings,
            symbol=symbol.ticker,
            symbol_id=symbol.id,
            timeframe=timeframe,
            window_days=symbol.window_days,
        )
        for timeframe in (Timeframe.M15, Timeframe.D1)
    )
    mine = [r for r in inflight if symbol.ticker in r.symbols]
    return SymbolStatus(
        symbol=symbol,
        m15=m15,
        d1=d1,
        last_bar=_last_bar(conn, symbol, m15),
        runs_running=sum(r.running for r in mine),
        runs_queued=sum(not r.running for r in mine),
        dividends=dividends,
    )


def _last_bar(conn: psycopg.Connection, symbol: WatchedSymbol, m15: Coverage) -> datetime | None:
    """Start of the newest m15 bar in the window (of the last session that has bars)."""
    if not m15.complete:
        return None
    day = max(m15.complete)
    bars = bar_store.read_bars(conn, symbol.id, Timeframe.M15, day, day)
    return bars["ts"][-1] if bars.height else None


def _bar(report: Coverage, width: int) -> Text:
    """A block bar that reads without colour too (a piped or logged terminal)."""
    expected = len(report.sessions)
    covered = len(report.complete)
    filled = round(width * covered / expected) if expected else width
    if covered < expected:
        filled = min(filled, width - 1)  # never looks complete while a session is missing
    bar = Text("█" * filled, style="green" if covered == expected else "yellow")
    bar.append("░" * (width - filled), style="dim")
    return bar


def _sessions(report: Coverage, *, percent: bool = False) -> str:
    data = report.to_json()["backfill_progress"]
    assert isinstance(data, dict)
    done, total = data["completed_slices"], data["total_slices"]
    assert isinstance(done, int) and isinstance(total, int)
    if not percent:
        return f"{done}/{total}"
    # Floored: 100% only when every session is there.
    return f"{done}/{total} {100 * done // total if total else 100}%"


def _print_table(
    settings: Settings, rows: list[SymbolStatus], inflight: list[InflightRange]
) -> None:
    console = Console(highlight=False)
    active = sum(row.symbol.is_active for row in rows)
    clock = " (SWIFTBOLT_NOW)" if settings.fixed_now else ""
    console.print(
        f"Watchlist: {active} active symbol(s); today {settings.today}{clock}, "
        f"history from {settings.history_start}"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, header_style="bold")
    table.add_column("symbol", no_wrap=True)
    table.add_column("window", justify="right", no_wrap=True)
    table.add_column("m15", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)  # the bar
    table.add_column("d1", justify="right", no_wrap=True)
    table.add_column("last bar (ET)", no_wrap=True)
    table.add_column("gaps", justify="right", no_wrap=True)
    table.add_column("in flight")
    width = BAR_WIDTH if console.width >= 100 else NARROW_BAR_WIDTH
    for row in rows:
        last = row.last_bar.astimezone(EXCHANGE_TZ) if row.last_bar else None
        table.add_row(
            row.symbol.ticker + ("" if row.symbol.is_active else " (removed)"),
            f"{row.symbol.window_days}d",
            _sessions(row.m15, percent=True),
            _bar(row.m15, width),
            _sessions(row.d1),
            f"{last:%Y-%m-%d %H:%M}" if last else "-",
            str(len(row.m15.gaps)),
            _inflight(row.runs_running, row.runs_queued),
        )
    console.print(table)
    running = sum(r.running for r in inflight)
    console.print(f"Runs in flight: {running} running, {len(inflight) - running} queued.")
    for row in rows:
        if row.dividends:
            d = row.dividends
            console.print(
                f"Dividends {row.symbol.ticker}: {d.count}, last ex-date {d.last_ex_date} "
                f"{d.last_cash_amount:f} {d.currency or ''}".rstrip()
            )
    if any(row.m15.gaps or row.d1.gaps for row in rows):
        console.print(
            "Gaps: `swiftbolt coverage SYMBOL --timeframe m15` lists them; `swiftbolt dev` "
            "(coverage_gap_sensor) or `swiftbolt backfill` fills them."
        )


def _inflight(running: int, queued: int) -> str:
    parts = [f"{running} running" if running else "", f"{queued} queued" if queued else ""]
    return ", ".join(p for p in parts if p) or "-"

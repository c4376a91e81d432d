"""Entry point: `swiftbolt <command>`. Known failures print one clear line, never a traceback."""

from __future__ import annotations

import logging
import sys
import warnings

import click
import dagster as dg
import psycopg

from swiftbolt_pipeline.cli.backfill import backfill
from swiftbolt_pipeline.cli.bench import bench
from swiftbolt_pipeline.cli.coverage import coverage
from swiftbolt_pipeline.cli.dev import dev
from swiftbolt_pipeline.cli.runtime import fail
from swiftbolt_pipeline.cli.serve import serve
from swiftbolt_pipeline.cli.status import status
from swiftbolt_pipeline.cli.universe import universe
from swiftbolt_pipeline.cli.worker import worker
from swiftbolt_pipeline.core.errors import ProviderError
from swiftbolt_pipeline.core.models import InvalidInput, is_crypto, normalize_tickers
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.launch import POOL_LIMITS, configure_pools
from swiftbolt_pipeline.services.runtime import open_runtime
from swiftbolt_pipeline.soak.command import soak
from swiftbolt_pipeline.storage import ratelimit, watchlist
from swiftbolt_pipeline.storage.database import DatabaseUnavailable
from swiftbolt_pipeline.storage.migrate import migrate, schema_lock


class SwiftboltGroup(click.Group):
    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            fail(exc.code, exc.message)
        except DatabaseUnavailable as exc:
            fail("DATABASE_UNAVAILABLE", str(exc))
        except ProviderError as exc:
            fail(exc.code, exc.message)
        except psycopg.OperationalError as exc:
            fail("DATABASE_UNAVAILABLE", f"lost the database connection: {exc}".strip())
        return None


@click.group(cls=SwiftboltGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log what is being fetched.")
def cli(verbose: bool) -> None:
    """SwiftBolt: a gap-free archive of US-equity intraday bars, orchestrated by Dagster."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # dagster.yaml raises our loggers to INFO so runs record what they fetch; on the terminal
    # those lines only show with -v (the run log in the UI always has them).
    logging.getLogger("swiftbolt_pipeline").propagate = verbose
    # Dagster flags some of the APIs we rely on (backfill policies, pools) as beta/preview.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Create or upgrade the schema (idempotent)."""
    runtime = open_runtime(migrate_schema=False)
    with runtime.connect() as conn:
        applied = migrate(conn)
    click.echo(f"applied {', '.join(applied)}" if applied else "schema is up to date")
    prepare_dagster_home(runtime.settings)
    # Concurrent migrators would both insert a pool's limit row.
    with schema_lock(runtime.database_url), open_instance(runtime.settings) as instance:
        configure_pools(instance)
    click.echo("pools: " + ", ".join(f"{k}={v}" for k, v in POOL_LIMITS.items()))


@cli.group()
def watch() -> None:
    """Manage the watchlist."""


@watch.command("add")
@click.argument("tickers", nargs=-1, required=True)
@click.option("--window-days", default=730, show_default=True,
              type=click.IntRange(1, watchlist.MAX_WINDOW_DAYS))  # fmt: skip
@click.option("--priority", default=0, show_default=True, type=int)
@click.option(
    "--m5/--no-m5",
    default=None,
    help="Also keep 5-minute bars (m5) of these stocks, beside the 15-minute ones (same "
    "requests, 3x the rows); --no-m5 stops them (stored m5 bars stay). Default: unchanged "
    "(off for a new symbol). SWIFTBOLT_M5=1 turns m5 on for every watched stock.",
)
def watch_add(tickers: tuple[str, ...], window_days: int, priority: int, m5: bool | None) -> None:
    """Add TICKERS (or re-activate them)."""
    symbols = normalize_tickers(list(tickers))
    pairs = [t for t in symbols if is_crypto(t)]
    if m5 and pairs:
        raise InvalidInput("INVALID_TIMEFRAME", f"crypto pairs have no m5 bars: {', '.join(pairs)}")
    with open_runtime().connect() as conn:
        added = watchlist.add(conn, symbols, window_days=window_days, priority=priority, m5=m5)
    for row in added:
        click.echo(
            f"watching {row.ticker} (window {row.window_days} days, priority {row.priority}"
            f"{', m5 on' if row.m5 else ''})"
        )


@watch.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include removed symbols.")
def watch_list(show_all: bool) -> None:
    """List watched symbols, and the parked ones with the reason (always shown)."""
    with open_runtime().connect() as conn:
        listed = watchlist.list_symbols(conn, active_only=not show_all)
        parked = watchlist.parked(conn)
    rows = [r for r in listed if r.parked_at is None]
    if not rows and not parked:
        click.echo("the watchlist is empty; add symbols with `swiftbolt watch add AAPL`")
        return
    if rows:
        click.echo(f"{'ticker':<8} {'active':<6} {'window':>6} {'priority':>8} {'m5':<3} added")
    for row in rows:
        click.echo(
            f"{row.ticker:<8} {'yes' if row.is_active else 'no':<6} {row.window_days:>6} "
            f"{row.priority:>8} {'on' if row.m5 else '-':<3} {row.added_at:%Y-%m-%d %H:%M}"
        )
    if parked:
        click.echo("parked (not fetched; `swiftbolt watch add` resumes them):")
    for row in parked:
        click.echo(f"{row.ticker:<8} since {row.parked_at:%Y-%m-%d %H:%M}: {row.parked_reason}")


@watch.command("remove")
@click.argument("tickers", nargs=-1, required=True)
def watch_remove(tickers: tuple[str, ...]) -> None:
    """Stop watching TICKERS (their bars stay in the archive)."""
    symbols = normalize_tickers(list(tickers))
    with open_runtime().connect() as conn:
        removed = watchlist.remove(conn, symbols)
    for ticker in symbols:
        click.echo(f"removed {ticker}" if ticker in removed else f"{ticker} was not being watched")


class _StatusByDefaultGroup(click.Group):
    """`tokens [provider]` shows status; `tokens set ...` is a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["status", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_StatusByDefaultGroup)
def tokens() -> None:
    """Token-bucket status (`tokens [PROVIDER]`) and limits (`tokens set`)."""


@tokens.command("status", hidden=True)
@click.argument("provider", required=False)
def tokens_status(provider: str | None) -> None:
    with open_runtime().connect() as conn:
        try:
            rows = ratelimit.token_status(conn, provider)
        except LookupError as exc:
            raise InvalidInput("UNKNOWN_PROVIDER", str(exc)) from None
    click.echo(
        f"{'provider':<10} {'available':>9} {'capacity':>8} {'refill/min':>10} {'full in':>8} "
        f"{'window':>7} {'sustained/min':>13} {'sustained/s':>11}"
    )
    for s in rows:
        click.echo(
            f"{s.provider:<10} {s.available_tokens:>9.2f} {s.capacity:>8} "
            f"{s.refill_rate:>10g} {s.seconds_until_full:>7.1f}s {s.window_s:>6g}s "
            f"{s.sustained_per_min:>13.4g} {s.sustained_per_min / 60:>11.4g}"
        )


@tokens.command("set")
@click.argument("provider")
@click.option("--capacity", required=True, type=click.IntRange(min=1))
@click.option("--refill-per-min", required=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--window-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Rolling window in which at most refill-per-min x window / 60 requests "
                   "are granted (default 61 s).")  # fmt: skip
def tokens_set(provider: str, capacity: int, refill_per_min: float, window_s: float | None) -> None:
    """Set PROVIDER's sustained rate (--refill-per-min) and largest burst (--capacity)."""
    with open_runtime().connect() as conn:
        try:
            ratelimit.set_limits(
                conn, provider, capacity=capacity, refill_per_min=refill_per_min, window_s=window_s
            )
            (s,) = ratelimit.token_status(conn, provider)
        except LookupError as exc:
            raise InvalidInput("UNKNOWN_PROVIDER", str(exc)) from None
    click.echo(
        f"{provider}: capacity {capacity}, refill {refill_per_min:g}/min, window {s.window_s:g}s"
        f" = {s.sustained_per_min:.4g} requests/min ({s.sustained_per_min / 60:.4g}/s) "
        f"sustained, bursts of at most {capacity}"
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8089, show_default=True, type=int)
@click.option("--rate-limit", type=int, default=None, help="Requests allowed per window.")
@click.option("--rate-window", type=float, default=60.0, show_default=True)
@click.option("--api-key", default=None, help="Only accept this key (default: any).")
def emulator(
    host: str, port: int, rate_limit: int | None, rate_window: float, api_key: str | None
) -> None:
    """Local Polygon- and Tradier-compatible server (recorded and generated bars)."""
    from swiftbolt_pipeline.emulator.app import EmulatorSettings
    from swiftbolt_pipeline.emulator.server import run

    settings = EmulatorSettings.from_env()
    settings.rate_limit = rate_limit if rate_limit is not None else settings.rate_limit
    settings.rate_window_s = rate_window
    settings.api_key = api_key or settings.api_key
    click.echo(f"emulator listening on http://{host}:{port}", err=True)
    run(host=host, port=port, settings=settings)


cli.add_command(backfill)
cli.add_command(coverage)
cli.add_command(dev)
cli.add_command(serve)
cli.add_command(bench)
cli.add_command(status)
cli.add_command(soak)
cli.add_command(universe)
cli.add_command(worker)

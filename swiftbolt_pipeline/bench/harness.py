"""Run every measurement in one process, in one bench world, and assemble the report."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from swiftbolt_pipeline.core import calendar

from .api import measure_api
from .compute import measure_resample
from .daily_crypto import measure_daily_crypto_requests
from .env import BENCH_NOW, BenchEnv, bench_env
from .ingest import measure_ingest
from .m5 import measure_m5_requests
from .pipeline import measure_orchestration, measure_rate_floor, measure_requests_and_memory
from .report import BenchReport, Row, command_line, machine_info, now_iso


@dataclass(frozen=True)
class BenchSizes:
    """How big each measurement is. `full()` is `make bench`; `tiny()` is the smoke test."""

    history_sessions: int | None = None  # None: every session from history start to yesterday
    orchestration_symbols: int = 10
    orchestration_measured: int = 2  # per-symbol runs actually timed for the N-symbol row
    single_day_runs: int = 3
    rate_symbols: int = 3
    rate_limit: int = 5
    rate_window_s: float = 10.0
    ingest_symbols: int = 10
    resample_symbols: int = 10
    scale_symbols: tuple[int, ...] = (100, 500)
    repeats: int = 3
    daily_years: int = 5  # year partitions of SPY's official d1 (the default daily depth)
    crypto_days: int = 90  # UTC days of one crypto pair

    @classmethod
    def full(cls) -> BenchSizes:
        return cls()

    @classmethod
    def tiny(cls) -> BenchSizes:
        return cls(
            history_sessions=8,
            orchestration_symbols=3,
            orchestration_measured=2,
            single_day_runs=1,
            rate_symbols=2,
            rate_limit=1,
            rate_window_s=0.5,
            ingest_symbols=2,
            resample_symbols=2,
            scale_symbols=(3, 6),
            repeats=1,
            daily_years=2,
            crypto_days=3,
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Dagster's beta/preview warnings and INFO chatter are noise in a report."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # Handlers, not loggers: Dagster sets the levels of the loggers it manages per run.
        handlers = [*logging.getLogger().handlers, *logging.getLogger("dagster").handlers]
        levels = [handler.level for handler in handlers]
        for handler in handlers:
            handler.setLevel(max(handler.level, logging.WARNING))
        try:
            yield
        finally:
            for handler, level in zip(handlers, levels, strict=True):
                handler.setLevel(level)


def run_bench(
    sizes: BenchSizes,
    *,
    now: str = BENCH_NOW,
    progress: Callable[[str], None] = lambda _: None,
    profile_dir: Path | None = None,
    workdir: Path | None = None,
) -> BenchReport:
    started_at, started = now_iso(), time.perf_counter()
    rows: list[Row] = []
    details: dict[str, Any] = {"timings_s": {}}

    def step(name: str, fn: Callable[[], tuple[list[Row], dict[str, Any]]]) -> None:
        progress(name)
        t0 = time.perf_counter()
        new_rows, new_details = fn()
        details["timings_s"][name] = round(time.perf_counter() - t0, 2)
        rows.extend(new_rows)
        details[name] = new_details

    with _quiet(), bench_env(now, workdir) as env:
        today = env.settings.today
        days = calendar.sessions_between(env.settings.history_start, today - timedelta(days=1))
        if sizes.history_sessions is not None:
            days = days[-sizes.history_sessions :]
        sessions = [calendar.session(d) for d in days]
        machine = machine_info(env.database_label)

        step(
            "resample",
            lambda: measure_resample(sessions, sizes.resample_symbols, max(5, sizes.repeats)),
        )
        step("ingest", lambda: measure_ingest(env, sessions, sizes.ingest_symbols, sizes.repeats))
        one_box: dict[str, Any] = {}

        def requests() -> tuple[list[Row], dict[str, Any]]:
            with _profiled(profile_dir, "backfill_1_symbol"):
                new_rows, one, more = measure_requests_and_memory(env, days)
            one_box["one"] = one
            return new_rows, more

        step("requests_memory", requests)
        step("m5_requests", lambda: measure_m5_requests(env, days, one_box["one"]))
        step(
            "orchestration",
            lambda: measure_orchestration(
                env,
                days,
                one_box["one"],
                sizes.orchestration_symbols,
                sizes.orchestration_measured,
                sizes.single_day_runs,
            ),
        )
        step(
            "daily_crypto_requests",
            lambda: measure_daily_crypto_requests(env, sizes.daily_years, sizes.crypto_days),
        )
        step(
            "rate_floor",
            lambda: measure_rate_floor(
                env, days, sizes.rate_symbols, sizes.rate_limit, sizes.rate_window_s
            ),
        )
        step("scale", lambda: measure_scale_step(env, sessions, sizes))
        step("api", lambda: measure_api(env, quick=sizes.history_sessions is not None))

    order = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7}
    rows.sort(key=lambda r: order.get(r.section, 99))
    return BenchReport(
        rows=rows,
        machine=machine,
        sizes={
            **asdict(sizes),
            "sessions": len(days),
            "first": str(days[0]),
            "last": str(days[-1]),
            "now": now,
        },
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        command=command_line(),
        details=details,
    )


def measure_scale_step(
    env: BenchEnv, sessions: list[calendar.Session], sizes: BenchSizes
) -> tuple[list[Row], dict[str, Any]]:
    from .scale import measure_scale

    return measure_scale(env, sessions, sizes.scale_symbols, max(3, sizes.repeats))


@contextlib.contextmanager
def _profiled(profile_dir: Path | None, name: str) -> Iterator[None]:
    """With a directory, profile the block with pyinstrument (a dev dependency)."""
    if profile_dir is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        profile_dir.mkdir(parents=True, exist_ok=True)
        (profile_dir / f"{name}.txt").write_text(profiler.output_text(unicode=True, color=False))
        (profile_dir / f"{name}.html").write_text(profiler.output_html())

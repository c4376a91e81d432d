"""Row 8: `ohlc_bars_v2` as the archive grows to a market's size (default 100 million rows).

The chart query (`get_chart_data_v2`) reads one symbol's primary-key range of `ohlc_bars_v2`,
the coverage query (`session_states`) one symbol's range of `bar_sessions` (a row per session,
kept by triggers), so their time should depend on that symbol's rows, not on the table's. The
bench fills the table with synthetic two-year histories (every session's m15, h1, h4 and d1
bars) in three steps, 1/100, 1/10 and all of the target, and times the queries on the same
symbols at each step; the ratio of the largest to the smallest is the row. Their executed
plans at full size go to `growth-plans.txt`."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage import benchmark, charts, watchlist
from swiftbolt_pipeline.storage.coverage import explain_session_states, session_states

from .env import BenchEnv, bench_env
from .report import BenchReport, Row, command_line, machine_info, now_iso

GROWTH_ROWS = 100_000_000
REPEATS = 9
SYMBOLS_PER_INSERT = 50  # about 0.9 million rows per statement
WATCHLIST_PROBE = 50  # symbols in the sensor-sized coverage query
NO_GROWTH = 1.5  # largest / smallest table: a B-tree descent is a level or two deeper, no more
INTERACTIVE_MS = 100.0
SENSOR_TICK_MS = 3_000.0  # a tenth of the gap sensor's 30 s interval


def _median_ms(fn: Callable[[], object]) -> float:
    fn()  # warm: the figures are for a served, cached archive, as a chart app sees it
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1e3


def measure_growth(
    env: BenchEnv,
    sessions: list[calendar.Session],
    target_rows: int,
    progress: Callable[[str], None],
) -> tuple[list[Row], dict[str, Any], str]:
    """(rows, details, plans): times at each size and the full size's executed plans."""
    per_symbol = len(sessions) * benchmark.SYNTHETIC_BARS_PER_SESSION
    total = math.ceil(target_rows / per_symbol)
    steps = sorted({max(1, total // 100), max(1, total // 10), total})
    names = [f"G{k:05d}" for k in range(total)]
    opens = [s.open for s in sessions]
    days = [s.day for s in sessions]
    year_ago = datetime.combine(days[-1] - timedelta(days=365), datetime.min.time(), UTC)
    month_ago = datetime.combine(days[-1] - timedelta(days=30), datetime.min.time(), UTC)
    last = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC)
    with env.connect() as conn:
        ids = watchlist.ensure(conn, names)  # archive rows only: nothing joins the watchlist
    probe, probe_id = names[0], ids[names[0]]
    watched = [ids[n] for n in names[: min(WATCHLIST_PROBE, steps[0])]]

    # name -> (query, budget in ms): a chart app waits on the first three; the last is the gap
    # sensor's read of a whole watchlist, due every 30 s.
    queries: dict[str, tuple[Callable[[Any], object], float]] = {
        "chart h1, 1 year": (
            lambda c: charts.chart_bars(c, probe, Timeframe.H1, year_ago, last),
            INTERACTIVE_MS,
        ),
        "chart m15, 30 days": (
            lambda c: charts.chart_bars(c, probe, Timeframe.M15, month_ago, last),
            INTERACTIVE_MS,
        ),
        "coverage, 1 symbol x 2 years": (
            lambda c: session_states(c, [probe_id], days),
            INTERACTIVE_MS,
        ),
        f"coverage, {len(watched)} symbols x 2 years": (
            lambda c: session_states(c, watched, days),
            SENSOR_TICK_MS,
        ),
    }
    details: dict[str, Any] = {"sessions": len(sessions), "symbols": total, "steps": []}
    loaded, written, fill_s = 0, 0, 0.0
    with env.connect() as conn:
        for step in steps:
            started = time.perf_counter()
            while loaded < step:
                batch = names[loaded : min(step, loaded + SYMBOLS_PER_INSERT)]
                written += benchmark.fill_synthetic_history(conn, [ids[n] for n in batch], opens)
                loaded += len(batch)
            fill_s += time.perf_counter() - started
            benchmark.analyze_bars(conn)
            rows_estimate, heap, index = benchmark.table_size(conn)
            timings = {name: _median_ms(lambda q=q: q(conn)) for name, (q, _) in queries.items()}
            conn.commit()
            details["steps"].append(
                {
                    "symbols": loaded,
                    "rows": written,
                    "rows_estimate": rows_estimate,
                    "heap_bytes": heap,
                    "index_bytes": index,
                    "fill_rows_per_s": written / fill_s if fill_s else None,
                    "median_ms": timings,
                }
            )
            summary = ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items())
            progress(f"{written:,} rows: {summary}")
        plans = "\n\n".join(
            [
                f"-- chart h1, 1 year, {probe}, {written:,} rows\n"
                + benchmark.explain_chart(conn, probe, "h1", year_ago, last),
                f"-- coverage, 1 symbol x {len(days)} sessions, {written:,} rows\n"
                + explain_session_states(conn, [probe_id], days),
            ]
        )
        conn.rollback()
    budgets = {name: budget for name, (_, budget) in queries.items()}
    return _rows(details, budgets), details, plans


def _rows(details: dict[str, Any], budgets: dict[str, float]) -> list[Row]:
    small, large = details["steps"][0], details["steps"][-1]
    rows = []
    for name, ms in large["median_ms"].items():
        reference = small["median_ms"][name]
        rows.append(
            Row(
                section="8",
                metric=f"{name} at {large['rows']:,} rows",
                measured=ms,
                unit="ms",
                reference=reference,
                reference_label=f"ms at {small['rows']:,} rows",
                target=f"<= {NO_GROWTH} and < {budgets[name]:,.0f} ms",
                met=ms / reference <= NO_GROWTH and ms < budgets[name],
                note="Median of "
                f"{REPEATS} warm runs on the same symbol; the table grew "
                f"{large['rows'] / small['rows']:.0f}x between the two figures.",
            )
        )
    gib = 1024**3
    rows.append(
        Row(
            section="8",
            metric="ohlc_bars_v2 size",
            measured=(large["heap_bytes"] + large["index_bytes"]) / gib,
            unit="GiB",
            reference=large["rows"] / 1e6,
            reference_label="million rows",
            note=f"heap {large['heap_bytes'] / gib:.1f} GiB + primary key "
            f"{large['index_bytes'] / gib:.1f} GiB; filled at "
            f"{large['fill_rows_per_s']:,.0f} rows/s (INSERT ... SELECT in key order).",
        )
    )
    return rows


def run_growth(
    target_rows: int = GROWTH_ROWS, progress: Callable[[str], None] = lambda _: None
) -> tuple[BenchReport, str]:
    started_at, started = now_iso(), time.perf_counter()
    with bench_env() as env:
        days = calendar.sessions_between(env.settings.history_start, env.settings.today)
        sessions = [calendar.session(d) for d in days[:-1]]
        rows, details, plans = measure_growth(env, sessions, target_rows, progress)
        machine = machine_info(env.database_label)
    report = BenchReport(
        rows=rows,
        machine=machine,
        sizes={"target_rows": target_rows, "sessions": len(sessions)},
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        command=command_line(),
        details=details,
    )
    return report, plans


def write_plans(plans: str, out_dir: Path) -> Path:
    path = out_dir / "growth-plans.txt"
    path.write_text(plans + "\n")
    return path

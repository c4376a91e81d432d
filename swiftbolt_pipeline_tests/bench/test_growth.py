"""Row 8 (table growth) at a small size: the synthetic fill writes exactly every session's
bars, the report has its rows, and both queries are primary-key range scans."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from swiftbolt_pipeline.bench.env import bench_env
from swiftbolt_pipeline.bench.growth import measure_growth
from swiftbolt_pipeline.core import calendar

# A full session: 26 m15, 7 h1, 2 h4 and 1 d1 bars.
BARS_PER_SESSION = 26 + 7 + 2 + 1
SESSIONS = 30
SYMBOLS = 100


@pytest.mark.usefixtures("clean_env")
def test_growth_fills_every_session_and_reads_by_primary_key(tmp_path: Path) -> None:
    lines: list[str] = []
    with bench_env(workdir=tmp_path) as env:
        days = calendar.sessions_between(env.settings.history_start, env.settings.today)
        sessions = [calendar.session(d) for d in days[-SESSIONS - 1 : -1]]
        target = SYMBOLS * SESSIONS * BARS_PER_SESSION
        rows, details, plans = measure_growth(env, sessions, target, lines.append)
        with env.connect() as conn:
            stored = conn.execute(
                "SELECT timeframe, count(*), count(DISTINCT symbol_id) FROM ohlc_bars_v2 "
                "GROUP BY timeframe ORDER BY timeframe"
            ).fetchall()
            summarized = conn.execute(
                "SELECT timeframe, count(*), sum(bars) FROM bar_sessions "
                "GROUP BY timeframe ORDER BY timeframe"
            ).fetchall()

    assert stored == [
        ("d1", SYMBOLS * SESSIONS, SYMBOLS),
        ("h1", SYMBOLS * SESSIONS * 7, SYMBOLS),
        ("h4", SYMBOLS * SESSIONS * 2, SYMBOLS),
        ("m15", SYMBOLS * SESSIONS * 26, SYMBOLS),
    ]
    # The fill goes through the same triggers as any writer: coverage has sessions to read.
    assert summarized == [(tf, SYMBOLS * SESSIONS, n) for tf, n, _ in stored]
    assert [step["symbols"] for step in details["steps"]] == [1, 10, 100]
    assert len(lines) == 3
    timed = [r for r in rows if r.unit == "ms"]
    assert len(timed) == 4 and all(r.section == "8" for r in rows)
    assert all(math.isfinite(r.ratio) and r.measured > 0 for r in timed)
    # The claim the row rests on: each query descends a primary key to one symbol's range.
    chart_plan, coverage_plan = plans.split("\n\n")
    assert "Index Scan using ohlc_bars_v2_pkey" in chart_plan
    # An index scan of it, or a bitmap scan of it: the planner picks by the table's statistics.
    assert re.search(r"Index Scan (using|on) bar_sessions_pkey", coverage_plan), coverage_plan
    assert f"rows={SESSIONS * 4} loops=1" in coverage_plan  # its sessions of 4 timeframes
    assert "Seq Scan on ohlc_bars_v2" not in plans

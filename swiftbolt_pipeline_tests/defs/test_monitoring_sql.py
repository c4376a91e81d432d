"""The old system's monitoring queries, read verbatim from the README, run against the ledger
of a real backfill: one week of SPY fetched, one of QQQ given up on Polygon's rate limit.
Expected answers come from the calendar in New York time, the stored bars and the emulator's
own request counts, not from `job_runs`."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.storage import ledger
from swiftbolt_pipeline_tests.reliability.helpers import inject, materialize, reset_emulator

README = Path(__file__).parents[2] / "README.md"
NEW_YORK = ZoneInfo("America/New_York")
SPY_WEEK = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))
QQQ_WEEK = calendar.sessions_between(date(2025, 6, 9), date(2025, 6, 13))


def monitoring_queries() -> list[str]:
    section = README.read_text().split("### Monitoring with SQL", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)
    assert len(queries) == 4
    return queries


def _ny(day: date, at: time) -> datetime:
    return datetime.combine(day, at, NEW_YORK)


@pytest.fixture
def backfilled(pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str) -> int:
    """The backfill; returns how many 429s the emulator answered."""
    reset_emulator(emulator)
    try:
        with dg.instance_for_test() as instance:
            assert materialize("SPY", SPY_WEEK, instance).success
            inject(emulator, {"route": "polygon", "kind": "status", "status": 429, "count": 50})
            assert not materialize("QQQ", QQQ_WEEK, instance).success
        stats = httpx.get(f"{emulator}/_emulator/stats").json()
    finally:
        reset_emulator(emulator)
    return int(stats["by_status"]["429"])


def test_old_monitoring_queries_answer_from_the_ledger(
    backfilled: int, conn: psycopg.Connection
) -> None:
    by_status, recent, covered, rate_limited = (
        conn.execute(query.encode()).fetchall() for query in monitoring_queries()
    )
    spy_bars = conn.execute(
        """SELECT count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = 'SPY' AND b.timeframe = 'm15'"""
    ).fetchone()
    assert spy_bars is not None and spy_bars[0] == 26 * len(SPY_WEEK)
    opened, closed = _ny(SPY_WEEK[0], time(9, 30)), _ny(SPY_WEEK[-1], time(16))

    assert sorted((status, n) for status, n, _ in by_status) == [("failed", 1), ("success", 1)]
    assert all(abs(datetime.now(UTC) - latest).total_seconds() < 600 for *_, latest in by_status)
    assert recent == [("SPY", "m15", "polygon", opened, closed, spy_bars[0])]
    assert covered == [("SPY", "m15", opened, closed, Decimal(spy_bars[0]))]
    # Every 429 the emulator sent was one attempt of the single fetch that gave up.
    assert rate_limited == [("polygon", 1)]
    cost = conn.execute(
        "SELECT actual_cost FROM job_runs WHERE error_code = 'RATE_LIMIT_EXCEEDED'"
    ).fetchone()
    assert cost == (backfilled,)


def test_slices_of_crypto_pairs_are_whole_utc_days(conn: psycopg.Connection) -> None:
    fetch = ledger.start_fetch(
        conn,
        run_id="r",
        provider="polygon",
        symbol="X:BTCUSD",
        timeframe="m15",
        first=date(2025, 6, 7),
        last=date(2025, 6, 8),
        expected_cost=1,
    )
    row = conn.execute("SELECT slice_from, slice_to FROM job_runs WHERE id = %s", (fetch,))
    assert row.fetchone() == (
        datetime(2025, 6, 7, tzinfo=UTC),
        datetime(2025, 6, 9, tzinfo=UTC),
    )

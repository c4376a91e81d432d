"""Races between real processes: two `swiftbolt backfill` over overlapping ranges at the same
time, and concurrent `swiftbolt db migrate` on a fresh database (Dagster's tables included).
Extends storage/test_bars.py and storage/test_migrate.py, which race threads over the storage
functions only."""

from __future__ import annotations

from collections import Counter
from datetime import date

import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.services.launch import POOL_LIMITS
from swiftbolt_pipeline.storage.migrate import available_migrations
from swiftbolt_pipeline.storage.ratelimit import set_limits
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import (
    count_bars,
    per_day,
    reset_emulator,
    run_cli_parallel,
    stored_m15,
)
from swiftbolt_pipeline_tests.storage.helpers import fresh_database

pytestmark = pytest.mark.reliability


@pytest.mark.slow
def test_two_overlapping_backfills_at_once_store_every_bar_exactly_once(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    # 2 requests per second shared by both processes: their windows interleave.
    set_limits(conn, "polygon", capacity=2, refill_per_min=120, window_s=1.0)
    conn.commit()
    reset_emulator(emulator)
    a = ["backfill", "--symbols", "SPY", "--start", "2025-05-12", "--end", "2025-09-30"]
    b = ["backfill", "--symbols", "spy", "--start", "2025-08-01", "--end", "2025-12-31"]
    first, second = run_cli_parallel([(a, pipeline_env), (b, pipeline_env)])
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    lo, hi = date(2025, 5, 12), date(2025, 12, 31)
    expected = regular_m15("SPY", lo, hi)
    assert per_day(conn, "SPY") == dict(
        Counter(calendar.exchange_date(ts) for ts in expected["ts"])
    )
    assert stored_m15(conn, "SPY") == list(expected.iter_rows())
    assert count_bars(conn) == expected.height
    assert conn.execute("SELECT DISTINCT status FROM job_runs").fetchall() == [("success",)]
    assert conn.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)


def test_concurrent_db_migrate_processes_on_a_fresh_database(
    pipeline_env: dict[str, str], database_url: str
) -> None:
    names = [name for _, name, _ in available_migrations()]
    with fresh_database(database_url) as url:
        env = {**pipeline_env, "DATABASE_URL": url}
        results = run_cli_parallel([(["db", "migrate"], env)] * 3)
        for result in results:
            assert result.returncode == 0, result.stderr
            assert "Traceback" not in result.stderr
            assert result.stdout.splitlines()[-1] == "pools: " + ", ".join(
                f"{pool}={limit}" for pool, limit in POOL_LIMITS.items()
            )
        firsts = sorted(result.stdout.splitlines()[0] for result in results)
        assert firsts == [f"applied {', '.join(names)}", *["schema is up to date"] * 2]
        with psycopg.connect(url) as c:
            versions = c.execute("SELECT name FROM schema_migrations ORDER BY version")
            assert [r[0] for r in versions.fetchall()] == names
            assert c.execute("SELECT count(*) FROM rate_buckets").fetchone() == (5,)
            dagster = c.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'dagster'"
            ).fetchone()
            assert dagster is not None and dagster[0] > 10

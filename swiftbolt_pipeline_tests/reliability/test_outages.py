"""Outages: the provider failing for a while or for good, and PostgreSQL restarted in the middle
of a backfill. Extends defs/test_m15_asset.py (503 for good -> PROVIDER_UNAVAILABLE) and
e2e/test_resume.py (SIGKILL between windows, then resume)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import date

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.storage.migrate import migrate
from swiftbolt_pipeline.storage.ratelimit import set_limits
from swiftbolt_pipeline_tests.conftest import RESET_SQL
from swiftbolt_pipeline_tests.e2e.cli_runner import SWIFTBOLT
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.conftest import PasswordServer
from swiftbolt_pipeline_tests.reliability.helpers import (
    cli_env,
    count_bars,
    emulator_requests,
    inject,
    invoke,
    materialize,
    per_day,
    reset_emulator,
    stored_m15,
)

pytestmark = pytest.mark.reliability

WEEK = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))
# Two planned Polygon windows (about 52 sessions each).
LONG_FIRST, LONG_LAST = date(2025, 5, 12), date(2025, 8, 29)


def _real_per_day(symbol: str, first: date, last: date) -> dict[date, int]:
    frame = regular_m15(symbol, first, last)
    return dict(Counter(calendar.exchange_date(ts) for ts in frame["ts"]))


def test_transient_faults_of_every_kind_are_retried_then_succeed(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    """503, a dropped connection, a truncated body and a timeout, one after the other: four
    retries inside the bounded five attempts, then every bar exactly once."""
    reset_emulator(emulator)
    inject(
        emulator,
        {"route": "polygon", "kind": "status", "status": 503},
        {"route": "polygon", "kind": "disconnect"},
        {"route": "polygon", "kind": "malformed"},
        {"route": "polygon", "kind": "delay", "seconds": 2.0},
    )
    try:
        with dg.instance_for_test() as instance:
            outcome = materialize("QQQ", WEEK, instance, polygon={"timeout_s": 0.5})
    finally:
        reset_emulator(emulator)
    assert outcome.success, outcome.error
    assert stored_m15(conn, "QQQ") == list(regular_m15("QQQ", WEEK[0], WEEK[-1]).iter_rows())
    row = conn.execute("SELECT status, actual_cost, expected_cost, error_code FROM job_runs")
    assert row.fetchall() == [("success", 5, 1, None)]


def test_provider_down_for_good_then_back_resumes_exactly(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    emulator: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Window 1 succeeds, then the provider drops every connection: bounded retries, a clear
    PROVIDER_UNAVAILABLE, window 1's partitions whole and window 2's absent. When the
    provider is back (and the breaker's cooldown over), a re-run fetches only window 2."""
    monkeypatch.setenv("SWIFTBOLT_BREAKER_COOLDOWN_S", "1")
    days = calendar.sessions_between(LONG_FIRST, LONG_LAST)
    expected = _real_per_day("SPY", LONG_FIRST, LONG_LAST)
    reset_emulator(emulator)
    inject(
        emulator,
        {"route": "polygon", "kind": "delay", "seconds": 0},  # answered normally
        {"route": "polygon", "kind": "disconnect", "count": 100},
    )
    try:
        with dg.instance_for_test() as instance:
            failed = materialize("SPY", days, instance)
            assert not failed.success
            assert failed.error is not None
            assert (
                "[PROVIDER_UNAVAILABLE] polygon: connection failed (RemoteProtocolError) after 5 "
                "attempts" in failed.error
            )
            assert emulator_requests(emulator) == 1 + 5
            stored = per_day(conn, "SPY")
            assert stored and all(n == expected[d] for d, n in stored.items())
            assert max(stored) < days[-1]
            ledger = conn.execute(
                "SELECT status, actual_cost, error_code FROM job_runs ORDER BY id"
            ).fetchall()
            assert ledger == [
                ("success", 1, None),
                ("failed", 5, "PROVIDER_UNAVAILABLE"),
            ]
            conn.commit()

            reset_emulator(emulator)
            time.sleep(1.2)  # the breaker's cooldown: the next request is its probe
            again = materialize("SPY", days, instance)
            assert again.success, again.error
            assert emulator_requests(emulator) == 1  # window 2 only
    finally:
        reset_emulator(emulator)
    assert per_day(conn, "SPY") == expected
    assert count_bars(conn) == sum(expected.values())
    assert conn.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)


def _succeeded(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as c:
            row = c.execute("SELECT count(*) FROM job_runs WHERE status = 'success'").fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return 0


@pytest.mark.slow
def test_database_restarted_mid_backfill_fails_cleanly_then_rerun_is_exact(
    pipeline_env: dict[str, str], emulator: str, password_server: PasswordServer
) -> None:
    """A real PostgreSQL restart (pg_ctl -m fast: every connection cut) while `swiftbolt
    backfill` is between windows: the command ends without a traceback, only whole partitions
    are stored, and running it again completes the archive exactly."""
    url = password_server.url()
    with psycopg.connect(url) as c:
        migrate(c)
        c.execute(RESET_SQL)
        # One request per second, so the restart lands while windows are still to come.
        set_limits(c, "polygon", capacity=1, refill_per_min=60, window_s=1.0)
        c.commit()
    first, last = date(2025, 5, 12), date(2025, 12, 31)  # real data: 4 windows
    expected = _real_per_day("SPY", first, last)
    env = {**pipeline_env, "DATABASE_URL": url}
    args = ["backfill", "--symbols", "SPY", "--start", str(first), "--end", str(last)]
    reset_emulator(emulator)
    proc = subprocess.Popen(
        [SWIFTBOLT, *args],
        env=cli_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _succeeded(url) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "backfill made no progress"
            time.sleep(0.05)
        password_server.restart()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in out + err, err
    with psycopg.connect(url) as c:
        stored = per_day(c, "SPY")
        # Only whole partitions, whatever the outcome of the interrupted run.
        assert all(n == expected[d] for d, n in stored.items())
        if proc.returncode == 0:  # retried through the restart: then it must be complete
            assert stored == expected
        else:
            assert "DATABASE_UNAVAILABLE" in err or "FAILED SPY" in err, err
            assert len(stored) < len(expected)

    with psycopg.connect(url) as c:
        set_limits(c, "polygon", capacity=1000, refill_per_min=1000)
        c.commit()
    again = invoke(args, env)
    assert again.returncode == 0, again.stderr
    with psycopg.connect(url) as c:
        assert per_day(c, "SPY") == expected
        assert count_bars(c) == sum(expected.values())
        assert c.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)

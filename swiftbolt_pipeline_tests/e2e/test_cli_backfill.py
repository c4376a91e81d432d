"""The CLI end to end: emulator over HTTP, real PostgreSQL (DATABASE_URL's and embedded)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg
import pytest

import swiftbolt_pipeline
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY, TEST_HISTORY_START, TEST_NOW
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator

MIGRATIONS = Path(swiftbolt_pipeline.__file__).parent / "storage" / "migrations"

START, END = "2026-02-09", "2026-03-06"  # 4 weeks of real data


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return dict(pipeline_env)


def _m15(conn: psycopg.Connection, ticker: str) -> list[tuple]:
    return conn.execute(
        """SELECT b.ts, b.open, b.high, b.low, b.close, b.volume
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s AND b.timeframe = 'm15' ORDER BY b.ts""",
        (ticker,),
    ).fetchall()


def test_backfill_stores_the_served_bars_once(
    env: dict[str, str], conn: psycopg.Connection
) -> None:
    first = run_cli("backfill", "--symbols", "spy,QQQ,SPY", "--start", START, "--end", END, env=env)
    assert first.returncode == 0, first.stderr
    assert "2 run(s), 38 partition(s), 988 m15 bars written, 2 request(s)" in first.stderr
    # The official d1 of 2026's 53 past sessions, one request per symbol.
    assert "Daily: 2 run(s), 2 year partition(s), 106 d1 bars written, 2 request(s)" in (
        first.stderr
    )

    expected = regular_m15("SPY", date.fromisoformat(START), date.fromisoformat(END))
    stored = _m15(conn, "SPY")
    assert len(stored) == expected.height == 19 * 26
    assert [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in stored] == list(
        expected.select("ts", "open", "high", "low", "close", "volume").iter_rows()
    )
    conn.commit()

    # Without --timeframes every timeframe is filled: right after it, coverage of h1 has no
    # gap inside the backfilled range (h1/h4 are derived, no request), and the official d1
    # of the whole year 2026 is fetched (one request per symbol) and rolled up to w1/mo1.
    report = run_cli(
        "coverage", "SPY", "--timeframe", "h1", "--window-days", "39", "--json", env=env
    )
    assert report.returncode == 0, report.stderr
    gaps = json.loads(report.stdout)["gaps"]
    assert [g["start"] for g in gaps] == ["2026-03-09"]  # the sessions after END only

    again = run_cli("backfill", "--symbols", "SPY,QQQ", "--start", START, "--end", END, env=env)
    assert again.returncode == 0, again.stderr
    assert _m15(conn, "SPY") == stored
    per_timeframe = dict(
        conn.execute("SELECT timeframe, count(*) FROM ohlc_bars_v2 GROUP BY 1").fetchall()
    )
    sessions = 2 * 19
    year = calendar.sessions_between(date(2026, 1, 1), date(2026, 3, 19))
    weeks = {d.isocalendar()[:2] for d in year} - {(2026, 1)}  # its Monday is in 2025
    assert per_timeframe == {
        "m15": 988, "h1": 7 * sessions, "h4": 2 * sessions, "d1": 2 * len(year),
        "w1": 2 * len(weeks), "mo1": 2 * 3,
    }  # fmt: skip
    assert "Daily: 2 run(s), 2 year partition(s)" in again.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--symbols", "ZZZZ", "--start", START, "--end", END], "SYMBOL_NOT_FOUND"),
        (
            ["--symbols", "A'; DROP TABLE symbols;--", "--start", START, "--end", END],
            "INVALID_SYMBOL",
        ),
        (["--symbols", "SPY", "--start", END, "--end", START], "INVALID_RANGE"),
        (["--symbols", "SPY", "--start", "2026-13-01", "--end", END], "INVALID_RANGE"),
        (["--symbols", "SPY", "--start", "2020-01-02", "--end", END], "INVALID_RANGE"),
        (["--symbols", "SPY", "--start", START, "--end", "2026-04-01"], "INVALID_RANGE"),
        (["--symbols", "SPY", "--start", "2026-02-14", "--end", "2026-02-16"], "INVALID_RANGE"),
        (
            ["--symbols", "SPY", "--start", START, "--end", END, "--timeframes", "m5"],
            "INVALID_TIMEFRAME",
        ),
    ],
)
def test_bad_input_is_refused_clearly_and_changes_nothing(
    env: dict[str, str], conn: psycopg.Connection, args: list[str], code: str
) -> None:
    result = run_cli("backfill", *args, env=env)
    assert result.returncode != 0
    assert f"[{code}]" in result.stderr
    assert "Traceback" not in result.stderr
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (0,)


def test_unreachable_database_is_a_clear_error(env: dict[str, str]) -> None:
    env = {**env, "DATABASE_URL": "postgresql://swift:s3cret-pw@127.0.0.1:1/nowhere"}
    result = run_cli("watch", "list", env=env, timeout=60)
    assert result.returncode != 0
    assert "[DATABASE_UNAVAILABLE]" in result.stderr
    assert "s3cret-pw" not in result.stderr
    assert "Traceback" not in result.stderr


def test_embedded_postgres_zero_setup(tmp_path, emulator: str) -> None:
    """No DATABASE_URL: the CLI starts PostgreSQL under SWIFTBOLT_HOME and stops it after."""
    home = tmp_path / "home"
    env = {
        "SWIFTBOLT_HOME": str(home),
        "SWIFTBOLT_NOW": TEST_NOW,
        "SWIFTBOLT_HISTORY_START": TEST_HISTORY_START,
        "POLYGON_BASE_URL": emulator,
        "POLYGON_API_KEY": EMULATOR_KEY,
    }
    first = run_cli("db", "migrate", env=env).stdout.splitlines()
    shipped = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert len(shipped) >= 7
    assert first == [f"applied {', '.join(shipped)}", "pools: polygon=2, tradier=2, alpaca=2"]
    assert run_cli("db", "migrate", env=env).stdout.splitlines()[0] == "schema is up to date"
    added = run_cli("watch", "add", "aapl", "--window-days", "30", "--priority", "3", env=env)
    assert added.returncode == 0 and "watching AAPL (window 30 days, priority 3)" in added.stdout
    result = run_cli("backfill", "--symbols", "AAPL", "--start", START, "--end", END, env=env)
    assert result.returncode == 0, result.stderr
    assert "494 m15 bars written" in result.stderr
    # The server stopped with the last process using it...
    assert not (home / "pgdata" / "postmaster.pid").exists()
    # ...and the data is there when it starts again.
    url = database.start_embedded(home)
    with psycopg.connect(url) as conn:
        assert _m15(conn, "AAPL")[0][0].isoformat() == "2026-02-09T14:30:00+00:00"
        assert conn.execute(
            "SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe = 'm15'"
        ).fetchone() == (494,)
        assert (
            conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'dagster'"
            ).fetchone()[0]
            > 10
        )


def test_no_api_key_uses_the_built_in_emulator(tmp_path, db_url: str) -> None:
    env = {
        "DATABASE_URL": db_url,
        "SWIFTBOLT_HOME": str(tmp_path / "home"),
        "SWIFTBOLT_NOW": TEST_NOW,
        "SWIFTBOLT_HISTORY_START": TEST_HISTORY_START,
    }
    result = run_cli("backfill", "--symbols", "NVDA", "--start", START, "--end", START, env=env)
    assert result.returncode == 0, result.stderr
    assert "built-in emulator" in result.stderr
    assert "26 m15 bars written" in result.stderr


def test_today_from_tradier_then_polygon_through_the_cli(
    env: dict[str, str], conn: psycopg.Connection
) -> None:
    """Today from Tradier (`is_intraday`), then Polygon once the day is past, as a user
    drives it with SWIFTBOLT_NOW."""
    day = "2026-03-11"
    during = {**env, "SWIFTBOLT_NOW": "2026-03-11T11:05:00-04:00"}
    intraday = ("--timeframes", "m15,h1,h4")  # today's session: the daily bar comes tomorrow
    result = run_cli(
        "backfill", "--symbols", "SPY", "--start", day, "--end", day, *intraday, env=during
    )
    assert result.returncode == 0, result.stderr
    rows = conn.execute(
        "SELECT timeframe, provider, is_intraday, count(*) FROM ohlc_bars_v2 GROUP BY 1, 2, 3"
    ).fetchall()
    conn.commit()
    # 09:30 .. 10:45 ET: the complete bars at 11:05, and what they derive (provisional too).
    assert sorted(rows) == [
        ("h1", "tradier", True, 2),
        ("h4", "tradier", True, 1),
        ("m15", "tradier", True, 6),
    ]

    after = {**env, "SWIFTBOLT_NOW": "2026-03-12T09:00:00-04:00"}
    result = run_cli(
        "backfill", "--symbols", "SPY", "--start", day, "--end", day, *intraday, env=after
    )
    assert result.returncode == 0, result.stderr
    rows = conn.execute(
        "SELECT timeframe, provider, is_intraday, count(*) FROM ohlc_bars_v2 GROUP BY 1, 2, 3"
    ).fetchall()
    assert sorted(rows) == [
        ("h1", "polygon", False, 7),
        ("h4", "polygon", False, 2),
        ("m15", "polygon", False, 26),
    ]


def test_a_real_key_never_wires_the_emulator_in_for_other_providers(
    env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    """A Polygon key and no Tradier token: today's session is skipped (said once), never
    served by the built-in emulator as if it were Tradier."""
    reset_emulator(emulator)
    during = {k: v for k, v in env.items() if not k.startswith(("TRADIER_", "ALPACA_"))} | {
        "SWIFTBOLT_NOW": "2026-03-11T11:05:00-04:00"
    }
    result = run_cli(
        "backfill", "--symbols", "SPY", "--start", "2026-03-10", "--end", "2026-03-11", env=during
    )
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "not configured" in line]
    assert notes == [
        "tradier: not configured (set TRADIER_TOKEN): today's session waits for the history "
        "provider"
    ]
    rows = conn.execute(
        "SELECT DISTINCT provider, is_intraday FROM ohlc_bars_v2 WHERE timeframe = 'm15'"
    ).fetchall()
    assert rows == [("polygon", False)]
    assert _m15(conn, "SPY")[-1][0].date().isoformat() == "2026-03-10"
    assert emulator_requests(emulator, "tradier") == 0

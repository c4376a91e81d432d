"""The watchlist (`symbols`): add, re-add, remove, list, ensure; the ticker CHECK."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from swiftbolt_pipeline.core.models import InvalidInput, Timeframe
from swiftbolt_pipeline.storage import bars, watchlist
from swiftbolt_pipeline.storage.migrate import migrate
from swiftbolt_pipeline_tests.storage.helpers import session_bars
from swiftbolt_pipeline_tests.storage.test_bars import MON
from swiftbolt_pipeline_tests.storage.test_ledger import migrated_before_0006

INJECTION = "A'; DROP TABLE symbols;--"


def active(conn: psycopg.Connection) -> list[str]:
    return [s.ticker for s in watchlist.list_symbols(conn)]


def test_add_and_list(conn: psycopg.Connection) -> None:
    added = watchlist.add(conn, ["MSFT", "AAPL"], window_days=365, priority=2)
    assert [(s.ticker, s.is_active, s.window_days, s.priority) for s in added] == [
        ("MSFT", True, 365, 2),
        ("AAPL", True, 365, 2),
    ]
    watchlist.add(conn, ["SPY"], priority=9)
    watchlist.add(conn, ["BRK.B"])
    listed = watchlist.list_symbols(conn)
    assert [s.ticker for s in listed] == ["SPY", "AAPL", "MSFT", "BRK.B"]  # priority, ticker
    assert listed[-1].window_days == 730 and listed[-1].priority == 0
    assert len({s.id for s in listed}) == 4


def test_add_commits(conn: psycopg.Connection, db_url: str) -> None:
    watchlist.add(conn, ["AAPL"])
    with psycopg.connect(db_url) as other:
        assert active(other) == ["AAPL"]


def test_re_add_reactivates_same_row_and_updates_settings(conn: psycopg.Connection) -> None:
    (first,) = watchlist.add(conn, ["AAPL"], window_days=100, priority=1)
    assert watchlist.remove(conn, ["AAPL"]) == ["AAPL"]
    assert active(conn) == []
    (again,) = watchlist.add(conn, ["AAPL"], window_days=200, priority=5)
    assert again.id == first.id
    assert again.added_at == first.added_at
    assert (again.is_active, again.window_days, again.priority) == (True, 200, 5)
    # Adding an active ticker again is not an error and does not duplicate it.
    watchlist.add(conn, ["AAPL"], window_days=300)
    assert [(s.ticker, s.window_days) for s in watchlist.list_symbols(conn)] == [("AAPL", 300)]


def test_remove_deactivates_and_keeps_bars(conn: psycopg.Connection) -> None:
    (aapl, _) = watchlist.add(conn, ["AAPL", "MSFT"])
    bars.replace_partitions(
        conn,
        symbol_id=aapl.id,
        timeframe=Timeframe.M15,
        days=[MON],
        bars=session_bars(MON),
        provider="polygon",
        is_intraday=False,
    )
    conn.commit()
    assert watchlist.remove(conn, ["AAPL", "NOPE"]) == ["AAPL"]
    assert watchlist.remove(conn, ["AAPL"]) == []  # already inactive
    assert active(conn) == ["MSFT"]
    everyone = watchlist.list_symbols(conn, active_only=False)
    assert [(s.ticker, s.is_active) for s in everyone] == [("AAPL", False), ("MSFT", True)]
    kept = bars.read_bars(conn, aapl.id, Timeframe.M15, MON, MON)
    assert kept.height == 26
    assert isinstance(kept, pl.DataFrame)


def test_ensure_inserts_inactive_and_never_activates(conn: psycopg.Connection) -> None:
    (aapl,) = watchlist.add(conn, ["AAPL"])
    (msft,) = watchlist.add(conn, ["MSFT"])
    watchlist.remove(conn, ["MSFT"])
    ids = watchlist.ensure(conn, ["AAPL", "MSFT", "NVDA"])
    assert ids["AAPL"] == aapl.id and ids["MSFT"] == msft.id
    assert set(ids) == {"AAPL", "MSFT", "NVDA"}
    state = {s.ticker: s.is_active for s in watchlist.list_symbols(conn, active_only=False)}
    assert state == {"AAPL": True, "MSFT": False, "NVDA": False}
    assert watchlist.ensure(conn, ["NVDA"]) == {"NVDA": ids["NVDA"]}  # stable id
    assert active(conn) == ["AAPL"]
    # A later `add` puts the ensured symbol on the watchlist under the same id.
    (nvda,) = watchlist.add(conn, ["NVDA"])
    assert nvda.id == ids["NVDA"] and nvda.is_active


def test_empty_lists_are_harmless(conn: psycopg.Connection) -> None:
    assert watchlist.add(conn, []) == []
    assert watchlist.ensure(conn, []) == {}
    assert watchlist.remove(conn, []) == []


@pytest.mark.parametrize("bad", [INJECTION, "aapl", "", "TOOLONGX", "A B", "1ABC"])
def test_ticker_check_rejects_bad_tickers_via_add(conn: psycopg.Connection, bad: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        watchlist.add(conn, [bad])
    conn.rollback()
    assert watchlist.list_symbols(conn, active_only=False) == []


def test_ticker_check_rejects_injection_even_via_raw_sql(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO symbols (ticker) VALUES (%s)", (INJECTION,))
    conn.rollback()
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO symbols (ticker) VALUES ('A''; DROP TABLE symbols;--')")
    conn.rollback()
    watchlist.add(conn, ["AAPL"])
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE symbols SET ticker = %s WHERE ticker = 'AAPL'", (INJECTION,))
    conn.rollback()
    assert active(conn) == ["AAPL"]  # the table is still there, unchanged


def test_add_is_all_or_nothing(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        watchlist.add(conn, ["GOOD", INJECTION])
    conn.rollback()
    with pytest.raises(psycopg.errors.CheckViolation):
        watchlist.ensure(conn, ["GOOD", INJECTION])
    conn.rollback()
    assert watchlist.list_symbols(conn, active_only=False) == []


@pytest.mark.parametrize("ticker", ["A", "BRK.B", "BF-B", "ABCDEF", "X1"])
def test_valid_tickers_accepted(conn: psycopg.Connection, ticker: str) -> None:
    (row,) = watchlist.add(conn, [ticker])
    assert row.ticker == ticker


@pytest.mark.parametrize("days", [0, -5, 3661, 1_000_000])
def test_window_days_out_of_bounds_is_refused_and_changes_nothing(
    conn: psycopg.Connection, days: int
) -> None:
    (before,) = watchlist.add(conn, ["AAPL"], window_days=100)
    with pytest.raises(InvalidInput) as refused:
        watchlist.add(conn, ["AAPL", "MSFT"], window_days=days)
    assert refused.value.code == "INVALID_RANGE"
    assert refused.value.message == f"window_days must be 1..3660 days, not {days}"
    assert watchlist.list_symbols(conn, active_only=False) == [before]


def test_window_days_bounds_are_inclusive(conn: psycopg.Connection) -> None:
    added = watchlist.add(conn, ["AAPL"], window_days=1) + watchlist.add(
        conn, ["MSFT"], window_days=3660
    )
    assert [(s.ticker, s.window_days) for s in added] == [("AAPL", 1), ("MSFT", 3660)]


@pytest.mark.parametrize("days", [0, 3661])
def test_database_holds_the_window_bound_for_any_writer(
    conn: psycopg.Connection, days: int
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO symbols (ticker, window_days) VALUES ('AAPL', %s)", (days,))
    conn.rollback()
    watchlist.add(conn, ["AAPL"])
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE symbols SET window_days = %s", (days,))
    conn.rollback()


def test_migration_clamps_windows_written_before_the_bound(database_url: str) -> None:
    with migrated_before_0006(database_url) as url, psycopg.connect(url) as db:
        db.execute(
            """INSERT INTO symbols (ticker, window_days)
               VALUES ('HUGE', 1000000), ('EDGE', 3661), ('OK', 3660), ('ONE', 1)"""
        )
        db.commit()
        migrate(db)
        rows = db.execute("SELECT ticker, window_days FROM symbols ORDER BY ticker").fetchall()
    assert dict(rows) == {"EDGE": 3660, "HUGE": 3660, "OK": 3660, "ONE": 1}

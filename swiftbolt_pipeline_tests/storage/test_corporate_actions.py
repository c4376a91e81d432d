"""`corporate_actions` storage: recording checks and splits, the staleness rule, settling."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import corporate_actions as ca
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.storage.helpers import session_bars

NOW = datetime(2026, 3, 20, 16, 0, tzinfo=UTC)
TODAY = date(2026, 3, 20)
START = date(2024, 3, 20)
SPLIT_DAY = date(2025, 11, 12)  # a Wednesday
DAYS = calendar.sessions_between(date(2025, 11, 3), date(2025, 11, 21))


@pytest.fixture
def db(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    conn.execute("TRUNCATE corporate_actions, corporate_action_checks")
    conn.commit()
    yield conn
    conn.rollback()
    conn.execute("TRUNCATE corporate_actions, corporate_action_checks")
    conn.commit()


def _store(conn: psycopg.Connection, symbol_id: int, days: list[date]) -> None:
    for day in days:
        bar_store.replace_partitions(
            conn,
            symbol_id=symbol_id,
            timeframe=Timeframe.M15,
            days=[day],
            bars=session_bars(day),
            provider="polygon",
            is_intraday=False,
        )
    conn.commit()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=EXCHANGE_TZ)


def test_schema_keeps_one_row_per_ticker_kind_and_day(db: psycopg.Connection) -> None:
    insert = """INSERT INTO corporate_actions
                (ticker, kind, execution_date, split_from, split_to, stale_before)
                VALUES ('AAPL', 'split', '2020-08-31', 1, 4, now())"""
    db.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert)
    db.rollback()
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(insert.replace("1, 4", "NULL, NULL"))
    db.rollback()


def test_first_check_is_a_baseline_trusting_the_execution_date(db: psycopg.Connection) -> None:
    new = ca.record_splits(db, "NVDA", [(date(2024, 6, 10), 1, 10)], checked_at=NOW)
    assert [(s.ticker, s.execution_date, s.ratio) for s in new] == [("NVDA", date(2024, 6, 10), 10)]
    assert new[0].stale_before == _midnight(date(2024, 6, 10))
    assert new[0].refetch_requested_at is None and new[0].settled_at is None
    # Seen again: nothing new, one row.
    assert ca.record_splits(db, "NVDA", [(date(2024, 6, 10), 1, 10)], checked_at=NOW) == []
    assert len(ca.splits(db, "NVDA")) == 1
    row = db.execute(
        "SELECT checked_at, status, splits_found FROM corporate_action_checks WHERE ticker = 'NVDA'"
    ).fetchone()
    assert row == (NOW, "ok", 1)


def test_a_split_appearing_later_makes_everything_fetched_before_it_stale(
    db: psycopg.Connection,
) -> None:
    ca.record_splits(db, "GENR", [], checked_at=NOW)  # the baseline found nothing
    (new,) = ca.record_splits(db, "GENR", [(SPLIT_DAY, 1, 4)], checked_at=NOW)
    db_now = db.execute("SELECT now()").fetchone()
    assert db_now is not None
    # A split published late counts from when we saw it, not from its (past) execution date.
    assert _midnight(SPLIT_DAY) < new.stale_before <= db_now[0]
    # A corrected ratio is a new split again.
    (changed,) = ca.record_splits(db, "GENR", [(SPLIT_DAY, 1, 3)], checked_at=NOW)
    assert changed.ratio == 3 and changed.stale_before >= new.stale_before
    assert [s.ratio for s in ca.splits(db, "GENR")] == [3]


def test_due_for_check_once_a_day_failures_after_an_hour(db: psycopg.Connection) -> None:
    watchlist.add(db, ["AAA", "BBB", "CCC", "DDD"])
    watchlist.add(db, ["EEE"], priority=5)
    watchlist.remove(db, ["DDD"])
    ca.record_splits(db, "AAA", [], checked_at=NOW - timedelta(hours=23))
    ca.record_splits(db, "BBB", [], checked_at=NOW - timedelta(hours=25))
    ca.record_failure(db, "CCC", checked_at=NOW - timedelta(minutes=61), code="X", message="m")
    due = ca.due_for_check(db, NOW, limit=10)
    # Never checked first (EEE; DDD is not watched), then the oldest checks.
    assert [d.ticker for d in due] == ["EEE", "BBB", "CCC"]
    assert [d.ticker for d in ca.due_for_check(db, NOW, limit=1)] == ["EEE"]
    ca.record_failure(db, "EEE", checked_at=NOW, code="X", message="m")
    assert [d.ticker for d in ca.due_for_check(db, NOW, limit=10)] == ["BBB", "CCC"]


def test_pending_refetch_covers_the_stale_range_before_the_split_then_settles(
    db: psycopg.Connection,
) -> None:
    (spy,) = watchlist.add(db, ["SPY"])
    _store(db, spy.id, DAYS)
    ca.record_splits(db, "SPY", [], checked_at=NOW)
    ca.record_splits(
        db, "SPY", [(SPLIT_DAY, 1, 2), (date(2026, 4, 1), 1, 3)], checked_at=NOW
    )  # the second one has not executed yet
    (refetch,) = ca.pending_refetches(db, TODAY, START)
    assert (refetch.ticker, refetch.symbol_id) == ("SPY", spy.id)
    assert (refetch.first_day, refetch.last_day) == (date(2025, 11, 3), date(2025, 11, 11))
    assert refetch.stale_days == 7 and refetch.execution_dates == (SPLIT_DAY,)
    assert ca.settle(db, TODAY, START) == []

    ca.mark_requested(db, "SPY", TODAY)
    marked = {s.execution_date: s.refetch_requested_at for s in ca.splits(db, "SPY")}
    assert marked[SPLIT_DAY] is not None and marked[date(2026, 4, 1)] is None
    # Requested: not planned again for a day (a failed run or a session the provider no
    # longer serves is retried daily, not every tick).
    assert ca.pending_refetches(db, TODAY, START) == []
    assert len(ca.pending_refetches(db, TODAY, START, retry_after=timedelta(0))) == 1

    # The re-fetch rewrites those partitions: nothing stale is left, the split settles.
    _store(db, spy.id, [d for d in DAYS if d < SPLIT_DAY])
    assert ca.pending_refetches(db, TODAY, START) == []
    assert ca.settle(db, TODAY, START) == [("SPY", SPLIT_DAY)]
    assert ca.settle(db, TODAY, START) == []
    # Once executed, the announced split is due as well, for the bars fetched before it was
    # seen (the sessions just re-fetched are newer than that).
    (later,) = ca.pending_refetches(db, date(2026, 4, 1), START)
    assert (later.first_day, later.last_day) == (SPLIT_DAY, DAYS[-1])


def test_bars_fetched_after_a_baseline_split_are_not_stale(db: psycopg.Connection) -> None:
    (nvda,) = watchlist.add(db, ["NVDA"])
    _store(db, nvda.id, DAYS)  # fetched "now", long after the split executed
    ca.record_splits(db, "NVDA", [(date(2025, 11, 12), 1, 10)], checked_at=NOW)
    assert ca.pending_refetches(db, TODAY, START) == []
    assert ca.settle(db, TODAY, START) == [("NVDA", date(2025, 11, 12))]
    # ...but bars stored before the split executed are (an archive older than this feature).
    db.execute("TRUNCATE corporate_actions, corporate_action_checks")
    db.execute(
        "UPDATE ohlc_bars_v2 SET fetched_at = %s WHERE symbol_id = %s",
        (_midnight(date(2025, 11, 11)), nvda.id),
    )
    db.commit()
    ca.record_splits(db, "NVDA", [(date(2025, 11, 12), 1, 10)], checked_at=NOW)
    (refetch,) = ca.pending_refetches(db, TODAY, START)
    assert (refetch.first_day, refetch.last_day) == (date(2025, 11, 3), date(2025, 11, 11))


def test_inactive_symbols_and_bars_before_the_window_are_left_alone(
    db: psycopg.Connection,
) -> None:
    (qqq,) = watchlist.add(db, ["QQQ"])
    _store(db, qqq.id, DAYS)
    ca.record_splits(db, "QQQ", [], checked_at=NOW)
    ca.record_splits(db, "QQQ", [(SPLIT_DAY, 1, 2)], checked_at=NOW)
    # The window starts after the stale days: nothing to fetch.
    assert ca.pending_refetches(db, TODAY, date(2025, 11, 12)) == []
    (refetch,) = ca.pending_refetches(db, TODAY, date(2025, 11, 6))
    assert refetch.first_day == date(2025, 11, 6)
    watchlist.remove(db, ["QQQ"])
    assert ca.pending_refetches(db, TODAY, START) == []
    assert ca.due_for_check(db, NOW + timedelta(days=2), limit=5) == []

"""The cost ledger (`job_runs`) and resumable checkpoints (`provider_checkpoints`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import psycopg
import pytest

from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage import bars, ledger, watchlist
from swiftbolt_pipeline.storage.migrate import available_migrations, migrate
from swiftbolt_pipeline_tests.storage.helpers import fresh_database, session_bars

D1, D2 = date(2024, 3, 4), date(2024, 4, 26)
TS1 = datetime(2024, 3, 8, 20, 45, tzinfo=UTC)
TS2 = datetime(2024, 3, 15, 19, 45, tzinfo=UTC)


def start(
    conn: psycopg.Connection, run_id: str = "run-1", symbol: str = "AAPL", cost: int = 2
) -> int:
    return ledger.start_fetch(
        conn,
        run_id=run_id,
        provider="polygon",
        symbol=symbol,
        timeframe="m15",
        first=D1,
        last=D2,
        expected_cost=cost,
    )


def row(conn: psycopg.Connection, fetch_id: int) -> dict[str, object]:
    cur = conn.execute("SELECT * FROM job_runs WHERE id = %s", (fetch_id,))
    values = cur.fetchone()
    assert values is not None
    return dict(zip([c.name for c in cur.description or []], values, strict=True))


def test_start_records_a_running_fetch(conn: psycopg.Connection) -> None:
    fid = start(conn)
    r = row(conn, fid)
    assert {k: r[k] for k in ("run_id", "provider", "symbol", "timeframe", "status")} == {
        "run_id": "run-1",
        "provider": "polygon",
        "symbol": "AAPL",
        "timeframe": "m15",
        "status": "running",
    }
    assert (r["range_start"], r["range_end"], r["expected_cost"]) == (D1, D2, 2)
    assert (r["actual_cost"], r["rows_written"], r["error_code"]) == (0, 0, None)
    assert r["started_at"] is not None and r["finished_at"] is None
    assert start(conn) != fid


def test_finish_success_and_failure(conn: psycopg.Connection) -> None:
    ok, bad = start(conn), start(conn, symbol="MSFT")
    ledger.finish_fetch(conn, ok, actual_cost=3, rows_written=1040)
    ledger.finish_fetch(
        conn, bad, actual_cost=5, rows_written=0, error_code="PROVIDER_UNAVAILABLE",
        error_message="server error (HTTP 503) after 5 attempts",
    )  # fmt: skip
    r = row(conn, ok)
    assert (r["status"], r["actual_cost"], r["rows_written"], r["error_code"]) == (
        "success", 3, 1040, None,
    )  # fmt: skip
    finished, started = r["finished_at"], r["started_at"]
    assert isinstance(finished, datetime) and isinstance(started, datetime)
    assert finished >= started
    r = row(conn, bad)
    assert (r["status"], r["error_code"], r["error_message"]) == (
        "failed",
        "PROVIDER_UNAVAILABLE",
        "server error (HTTP 503) after 5 attempts",
    )
    assert r["finished_at"] is not None


def test_run_cost_sums_the_given_runs_only(conn: psycopg.Connection) -> None:
    a1, a2 = start(conn, "A", cost=2), start(conn, "A", "MSFT", cost=1)
    b1 = start(conn, "B", cost=10)
    c1 = start(conn, "C", cost=4)
    ledger.finish_fetch(conn, a1, actual_cost=3, rows_written=100)
    ledger.finish_fetch(conn, a2, actual_cost=6, rows_written=0, error_code="RATE_LIMIT_EXCEEDED")
    ledger.finish_fetch(conn, b1, actual_cost=10, rows_written=7)
    assert c1  # still running: counted, cost 0 so far
    assert ledger.run_cost(conn, ["A"]) == ledger.CostSummary(2, 1, 3, 9, 100)
    assert ledger.run_cost(conn, ["A", "C"]) == ledger.CostSummary(3, 1, 7, 9, 100)
    assert ledger.run_cost(conn, ["A", "B", "C"]) == ledger.CostSummary(4, 1, 17, 19, 107)
    assert ledger.run_cost(conn, ["nope"]) == ledger.CostSummary(0, 0, 0, 0, 0)
    assert ledger.run_cost(conn, []) == ledger.CostSummary(0, 0, 0, 0, 0)


def test_status_check_rejects_unknown_status(conn: psycopg.Connection) -> None:
    fid = start(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE job_runs SET status = 'weird' WHERE id = %s", (fid,))


def test_checkpoint_lifecycle(conn: psycopg.Connection) -> None:
    assert ledger.checkpoint(conn, "polygon", "AAPL", "m15") is None
    ledger.advance_checkpoint(conn, "polygon", "AAPL", "m15", range_start=D1, last_ts=TS1, bars=130)
    assert ledger.checkpoint(conn, "polygon", "AAPL", "m15") == (D1, TS1)
    ledger.advance_checkpoint(conn, "polygon", "AAPL", "m15", range_start=D1, last_ts=TS2, bars=130)
    assert ledger.checkpoint(conn, "polygon", "AAPL", "m15") == (D1, TS2)
    written = conn.execute(
        "SELECT bars_written FROM provider_checkpoints WHERE symbol = 'AAPL'"
    ).fetchone()
    assert written == (260,)
    # Keyed by provider, symbol and timeframe.
    assert ledger.checkpoint(conn, "polygon", "AAPL", "h1") is None
    assert ledger.checkpoint(conn, "alpaca", "AAPL", "m15") is None
    assert ledger.checkpoint(conn, "polygon", "MSFT", "m15") is None
    ledger.advance_checkpoint(conn, "polygon", "MSFT", "m15", range_start=D2, last_ts=TS1, bars=1)
    ledger.clear_checkpoint(conn, "polygon", "AAPL", "m15")
    assert ledger.checkpoint(conn, "polygon", "AAPL", "m15") is None
    assert ledger.checkpoint(conn, "polygon", "MSFT", "m15") == (D2, TS1)


def test_a_new_fetch_range_replaces_the_checkpoint_start(conn: psycopg.Connection) -> None:
    ledger.advance_checkpoint(conn, "polygon", "AAPL", "m15", range_start=D1, last_ts=TS1, bars=5)
    ledger.advance_checkpoint(conn, "polygon", "AAPL", "m15", range_start=D2, last_ts=TS2, bars=5)
    assert ledger.checkpoint(conn, "polygon", "AAPL", "m15") == (D2, TS2)


def test_checkpoint_commits_or_rolls_back_with_the_bars(
    conn: psycopg.Connection, db_url: str
) -> None:
    sid = watchlist.ensure(conn, ["AAPL"])["AAPL"]
    conn.commit()

    def write_both() -> None:
        bars.replace_partitions(
            conn, symbol_id=sid, timeframe=Timeframe.M15, days=[D1], bars=session_bars(D1),
            provider="polygon", is_intraday=False,
        )  # fmt: skip
        ledger.advance_checkpoint(
            conn, "polygon", "AAPL", "m15", range_start=D1, last_ts=TS1, bars=26
        )

    with pytest.raises(RuntimeError), conn.transaction():
        write_both()
        raise RuntimeError("killed mid-fetch")
    with psycopg.connect(db_url) as other:
        assert ledger.checkpoint(other, "polygon", "AAPL", "m15") is None
        assert other.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (0,)
    with conn.transaction():
        write_both()
    with psycopg.connect(db_url) as other:
        assert ledger.checkpoint(other, "polygon", "AAPL", "m15") == (D1, TS1)
        assert other.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (26,)


# --- abandoned fetches ----------------------------------------------------------------------


WORKER = "swiftbolt_pipeline_tests.storage.ledger_worker"


def statuses(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute("SELECT id, status FROM job_runs").fetchall()
    conn.commit()
    return dict(rows)


def wait_session_gone(conn: psycopg.Connection, backend_pid: int) -> None:
    """A server process ends on its own time after its client closes or dies: wait for that
    (the condition itself, bounded) before testing the sweep."""
    deadline = time.monotonic() + 30
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        alive = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend_pid,)
        ).fetchone()
        conn.commit()
        if alive == (0,):
            return
        assert time.monotonic() < deadline, "the killed process's session never ended"
        time.sleep(0.05)


def test_sweep_abandons_the_rows_of_a_killed_process_and_keeps_live_ones(
    conn: psycopg.Connection, db_url: str
) -> None:
    mine = start(conn, "live-here")
    conn.commit()
    with psycopg.connect(db_url) as other:
        theirs = start(other, "live-other-session")
        other.commit()
        worker = subprocess.Popen(
            [sys.executable, "-m", WORKER, db_url, "DOOM"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            fetch_id, backend_pid = (int(v) for v in worker.stdout.readline().split())
            # Alive in another process: untouched.
            assert ledger.abandon_orphans(conn) == 0
            assert statuses(conn)[fetch_id] == "running"
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(30) == -signal.SIGKILL
        finally:
            worker.kill()
            worker.communicate()
        wait_session_gone(conn, backend_pid)
        assert ledger.abandon_orphans(conn) == 1
        assert statuses(conn) == {mine: "running", theirs: "running", fetch_id: "abandoned"}
        r = row(conn, fetch_id)
        assert r["finished_at"] is not None and r["error_message"]
        assert ledger.abandon_orphans(conn) == 0  # idempotent
        ledger.finish_fetch(other, theirs, actual_cost=1, rows_written=26)
        other.commit()
    # `other` closed normally after finishing: nothing of it is left running.
    assert ledger.abandon_orphans(conn) == 0
    assert statuses(conn) == {mine: "running", theirs: "success", fetch_id: "abandoned"}


def test_sweep_sees_sessions_started_after_it_first_read_activity(
    conn: psycopg.Connection, db_url: str
) -> None:
    """PostgreSQL caches session activity for the rest of a transaction: a sweep inside one
    that read it earlier must still see a session (and row) that appeared since."""
    conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()
    with psycopg.connect(db_url) as late:
        fresh = start(late, "late-run")
        late.commit()
        assert ledger.abandon_orphans(conn) == 0
        assert statuses(conn)[fresh] == "running"


def test_a_fetch_that_finishes_after_being_marked_keeps_its_real_outcome(
    conn: psycopg.Connection, db_url: str
) -> None:
    """Its connection was cut (say, a database restart) but the process lived on."""
    with psycopg.connect(db_url) as cut:
        fid = start(cut, "survivor")
        cut.commit()
        cut_pid = cut.info.backend_pid
    wait_session_gone(conn, cut_pid)
    assert ledger.abandon_orphans(conn) == 1
    assert statuses(conn)[fid] == "abandoned"
    ledger.finish_fetch(conn, fid, actual_cost=2, rows_written=52)
    conn.commit()
    assert (row(conn, fid)["status"], row(conn, fid)["rows_written"]) == ("success", 52)


@contextmanager
def migrated_before_0006(database_url: str) -> Iterator[str]:
    """A fresh database with the migrations before 0006 applied: the schema it upgrades."""
    with fresh_database(database_url) as url:
        with psycopg.connect(url) as db:
            db.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, name, sql in available_migrations():
                if version < 6:
                    db.execute(sql.encode())
                    db.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, name))
        yield url


def test_migration_abandons_running_rows_that_have_no_owner(database_url: str) -> None:
    with migrated_before_0006(database_url) as url, psycopg.connect(url) as db:
        legacy = start(db, "old-run")
        done = start(db, "old-run", symbol="MSFT")
        # A finished fetch as the code of that time recorded it.
        db.execute(
            "UPDATE job_runs SET status = 'succeeded', finished_at = now() WHERE id = %s", (done,)
        )
        db.commit()
        assert [name for name in migrate(db) if name.startswith("0006")]
        assert statuses(db) == {legacy: "abandoned", done: "success"}  # 0008 renamed it
        assert row(db, done)["owner_pid"] is None  # not stamped with the migrator's session
        # Rows opened from now on record their session, so a live one is kept.
        fresh = start(db, "new-run")
        db.commit()
        r = row(db, fresh)
        own = db.execute(
            "SELECT pg_backend_pid(), backend_start FROM pg_stat_activity"
            " WHERE pid = pg_backend_pid()"
        ).fetchone()
        assert (r["owner_pid"], r["owner_started_at"]) == own
        assert ledger.abandon_orphans(db) == 0

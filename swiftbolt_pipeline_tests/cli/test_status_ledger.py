"""`swiftbolt status` sweeps the ledger: fetches of processes that ended mid-fetch are marked
abandoned, live ones are left running."""

from __future__ import annotations

from datetime import date

import psycopg

from swiftbolt_pipeline.storage import ledger
from swiftbolt_pipeline_tests.reliability.helpers import invoke
from swiftbolt_pipeline_tests.storage.test_ledger import wait_session_gone


def _open_fetch(conn: psycopg.Connection, run_id: str) -> int:
    fetch_id = ledger.start_fetch(
        conn,
        run_id=run_id,
        provider="polygon",
        symbol="SPY",
        timeframe="m15",
        first=date(2026, 3, 2),
        last=date(2026, 3, 6),
        expected_cost=1,
    )
    conn.commit()
    return fetch_id


def test_status_marks_fetches_of_ended_sessions_abandoned(
    pipeline_env: dict[str, str], conn: psycopg.Connection, db_url: str
) -> None:
    live = _open_fetch(conn, "live")
    with psycopg.connect(db_url) as gone:
        dead = _open_fetch(gone, "dead")
        gone_pid = gone.info.backend_pid
    wait_session_gone(conn, gone_pid)

    first = invoke(["status"], pipeline_env)
    again = invoke(["status"], pipeline_env)

    assert first.returncode == 0, first.stderr
    assert "Ledger: marked 1 fetch(es) abandoned (their process ended mid-fetch)." in first.stdout
    assert again.returncode == 0 and "Ledger:" not in again.stdout
    states = dict(conn.execute("SELECT id, status FROM job_runs").fetchall())
    assert states == {live: "running", dead: "abandoned"}

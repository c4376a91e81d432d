"""Run as a process by test_ledger: open a ledger row, say so, then wait to be killed.

Prints `<fetch id> <backend pid>` once the row is committed, then blocks on stdin."""

from __future__ import annotations

import sys
from datetime import date

import psycopg

from swiftbolt_pipeline.storage import ledger


def main(url: str, symbol: str) -> None:
    with psycopg.connect(url) as conn:
        fetch_id = ledger.start_fetch(
            conn,
            run_id="doomed-run",
            provider="polygon",
            symbol=symbol,
            timeframe="m15",
            first=date(2024, 3, 4),
            last=date(2024, 3, 8),
            expected_cost=1,
        )
        conn.commit()
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        print(fetch_id, row[0], flush=True)
        sys.stdin.read()  # until killed (or the test closes our stdin)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""`swiftbolt status` shows each symbol's stored dividends: how many, the last ex-date and
amount."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg

from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.dividends import DividendRow, replace_dividends
from swiftbolt_pipeline_tests.reliability.helpers import invoke


def test_status_lists_dividends_per_symbol(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    watchlist.add(conn, ["MSFT", "QQQ"])
    rows = [
        DividendRow("MSFT", date(2025, 11, 20), None, date(2025, 12, 11), Decimal("0.91"),
                    "USD", 4, "CD"),
        DividendRow("MSFT", date(2025, 8, 21), None, None, Decimal("0.83"), "USD", 4, "CD"),
    ]  # fmt: skip
    replace_dividends(conn, "MSFT", rows, fetched_at=datetime(2026, 3, 20, tzinfo=UTC))
    conn.commit()

    text = invoke(["status"], pipeline_env)
    assert text.returncode == 0, text.stderr
    assert "Dividends MSFT: 2, last ex-date 2025-11-20 0.91 USD" in text.stdout
    assert "Dividends QQQ" not in text.stdout

    as_json = invoke(["status", "--json"], pipeline_env)
    assert as_json.returncode == 0, as_json.stderr
    by_symbol = {row["symbol"]: row["dividends"] for row in json.loads(as_json.stdout)}
    assert by_symbol == {
        "MSFT": {"count": 2, "last_ex_date": "2025-11-20", "last_cash_amount": 0.91,
                 "currency": "USD"},
        "QQQ": {"count": 0, "last_ex_date": None, "last_cash_amount": None, "currency": None},
    }  # fmt: skip

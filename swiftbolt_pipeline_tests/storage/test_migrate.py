"""Migrations: idempotent, the contract schema, safe when several migrators race."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from swiftbolt_pipeline.storage.migrate import available_migrations, migrate
from swiftbolt_pipeline_tests.storage.helpers import fresh_database

MIGRATORS = 6


@pytest.fixture(scope="module")
def raced(database_url: str) -> Iterator[tuple[str, list[list[str] | BaseException]]]:
    """A FRESH database migrated by several connections at once (threads behind a barrier)."""
    with fresh_database(database_url) as url:
        barrier = threading.Barrier(MIGRATORS)
        results: list[list[str] | BaseException] = [[] for _ in range(MIGRATORS)]

        def run(i: int) -> None:
            try:
                with psycopg.connect(url) as conn:
                    barrier.wait(timeout=30)
                    results[i] = migrate(conn)
            except BaseException as exc:
                results[i] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(MIGRATORS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        yield url, results


def test_concurrent_migrate_on_fresh_database_applies_each_migration_once(
    raced: tuple[str, list[list[str] | BaseException]],
) -> None:
    url, results = raced
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    names = [name for _, name, _ in available_migrations()]
    assert names and names[0].startswith("0001")
    applied = [r for r in results if r]
    assert applied == [names], "exactly one migrator applies everything, the others nothing"
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
        assert [name for _, name in rows] == names
        # Seeds inserted once, not once per migrator.
        assert conn.execute("SELECT count(*) FROM rate_buckets").fetchone() == (5,)


def test_second_migrate_applies_nothing(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert migrate(conn) == []
        assert migrate(conn) == []
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == before


def test_migrate_on_the_shared_test_database_is_a_no_op(conn: psycopg.Connection) -> None:
    assert migrate(conn) == []


def test_rate_bucket_seed_rows(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT provider, capacity, refill_per_min, tokens FROM rate_buckets ORDER BY provider"
        ).fetchall()
    assert {p: (c, r, t) for p, c, r, t in rows} == {
        "alpaca": (200, Decimal(200), Decimal(200)),
        "finnhub": (60, Decimal(60), Decimal(60)),
        "polygon": (5, Decimal(5), Decimal(5)),
        "tradier": (120, Decimal(120), Decimal(120)),
        "yahoo": (2000, Decimal(2000), Decimal(2000)),
    }


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        """SELECT column_name FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = %s""",
        (table,),
    ).fetchall()
    return {r[0] for r in rows}


CONTRACT_COLUMNS = {
    "symbols": {"id", "ticker", "is_active", "window_days", "priority", "added_at"},
    "ohlc_bars_v2": {
        "symbol_id", "timeframe", "ts", "open", "high", "low", "close", "volume", "vwap",
        "trade_count", "provider", "is_intraday", "fetched_at",
    },
    "rate_buckets": {"provider", "capacity", "refill_per_min", "tokens", "updated_at"},
    "job_runs": {
        "run_id", "provider", "symbol", "timeframe", "range_start", "range_end", "status",
        "expected_cost", "actual_cost", "rows_written", "error_code", "error_message",
        "started_at", "finished_at",
    },
    "provider_checkpoints": {
        "provider", "symbol", "timeframe", "last_ts", "bars_written", "updated_at",
    },
}  # fmt: skip


@pytest.mark.parametrize("table", sorted(CONTRACT_COLUMNS))
def test_contract_tables_have_contract_columns(raced: tuple[str, object], table: str) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn:
        assert CONTRACT_COLUMNS[table] <= _columns(conn, table)


def test_bars_primary_key_is_symbol_timeframe_ts(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT array_agg(a.attname ORDER BY k.ord)
               FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = 'ohlc_bars_v2'::regclass AND i.indisprimary"""
        ).fetchone()
    assert row == (["symbol_id", "timeframe", "ts"],)


def test_symbols_ticker_is_unique(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        conn.execute("INSERT INTO symbols (ticker) VALUES ('AAPL')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO symbols (ticker) VALUES ('AAPL')")


def test_contract_functions_exist_and_answer(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute("SELECT * FROM get_token_status('polygon')")
        assert [c.name for c in cur.description or []] == [
            "provider",
            "available_tokens",
            "capacity",
            "refill_rate",
            "seconds_until_full",
        ]
        provider, available, capacity, refill, until_full = cur.fetchone() or ()
        assert (provider, available, capacity, refill, until_full) == ("polygon", 5, 5, 5, 0)
        assert conn.execute("SELECT take_token('polygon')").fetchone() == (True,)
        cur = conn.execute(
            "SELECT * FROM get_chart_data_v2('AAPL', 'm15', now() - interval '1 day', now())"
        )
        assert cur.fetchall() == []
        assert [c.name for c in cur.description or []] == [
            "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count", "provider",
            "is_intraday",
        ]  # fmt: skip


def test_dagster_has_its_own_schema(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = 'dagster'"
        ).fetchone() == (1,)


@pytest.mark.parametrize(
    ("column", "value"),
    [("timeframe", "m30"), ("timeframe", "d7"), ("provider", "yahoo"), ("volume", "-1")],
)
def test_bar_checks_reject_values_outside_the_contract(
    raced: tuple[str, object], column: str, value: str
) -> None:
    url, _ = raced
    row = {
        "timeframe": "m15",
        "provider": "polygon",
        "volume": "1",
    } | {column: value}
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        sid = conn.execute("INSERT INTO symbols (ticker) VALUES ('CHK') RETURNING id").fetchone()
        assert sid is not None
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close,
                                             volume, provider)
                   VALUES (%s, %s, now(), 1, 2, 0.5, 1.5, %s, %s)""",
                (sid[0], row["timeframe"], int(row["volume"]), row["provider"]),
            )


def test_every_contract_timeframe_is_accepted(raced: tuple[str, object]) -> None:
    url, _ = raced
    with psycopg.connect(url) as conn, conn.transaction(force_rollback=True):
        sid = conn.execute("INSERT INTO symbols (ticker) VALUES ('CHK') RETURNING id").fetchone()
        assert sid is not None
        for timeframe in ("m5", "m15", "h1", "h4", "d1", "w1", "mo1"):
            conn.execute(
                """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close,
                                             volume, provider)
                   VALUES (%s, %s, now(), 1, 2, 0.5, 1.5, 1, 'polygon')""",
                (sid[0], timeframe),
            )
        stored = conn.execute("SELECT count(*) FROM ohlc_bars_v2 WHERE symbol_id = %s", sid)
        assert stored.fetchone() == (7,)

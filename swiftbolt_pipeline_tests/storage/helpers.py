"""Helpers for the storage tests: bar frames on the exchange clock, fresh databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import psycopg

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.models import BAR_SCHEMA


def et(day: date, hour: int, minute: int = 0) -> datetime:
    """An exchange wall-clock time, as UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=EXCHANGE_TZ).astimezone(UTC)


def bars_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return (
        pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")
        if rows
        else pl.DataFrame(schema=BAR_SCHEMA)
    )


def session_bars(day: date, count: int = 26, *, price: float = 100.0) -> pl.DataFrame:
    """`count` m15 bars from 09:30 ET on `day`, distinct and OHLC-consistent."""
    start = et(day, 9, 30)
    rows = []
    for i in range(count):
        base = price + i * 0.25
        rows.append(
            {
                "ts": start + timedelta(minutes=15 * i),
                "open": base,
                "high": base + 1.125,
                "low": base - 0.5,
                "close": base + 0.375,
                "volume": 1000 + i,
                "vwap": base + 0.1 if i % 5 else None,
                "trade_count": 10 + i if i % 7 else None,
            }
        )
    return bars_frame(rows)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@contextmanager
def fresh_database(database_url: str) -> Iterator[str]:
    """A new, empty database on the server of `database_url`; dropped afterwards."""
    admin_url = with_database(database_url, "postgres")
    name = f"swiftbolt_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(database_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

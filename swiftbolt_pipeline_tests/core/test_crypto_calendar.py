"""The 24/7 crypto calendar and the crypto ticker rules, against hand-written expectations."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from swiftbolt_pipeline.core import crypto_calendar
from swiftbolt_pipeline.core.models import (
    BAR_SCHEMA,
    InvalidInput,
    Timeframe,
    crypto_pair,
    is_crypto,
    normalize_ticker,
)
from swiftbolt_pipeline.core.resample import resample
from swiftbolt_pipeline.core.universe import equities_only


def test_every_day_is_a_session_weekends_and_holidays_included() -> None:
    days = crypto_calendar.days_between(date(2025, 12, 24), date(2026, 1, 2))
    assert len(days) == 10
    assert date(2025, 12, 25) in days and date(2026, 1, 1) in days
    assert date(2025, 12, 27) in days and date(2025, 12, 28) in days  # Saturday, Sunday
    session = crypto_calendar.day_session(date(2025, 12, 25))
    assert session.open == datetime(2025, 12, 25, tzinfo=UTC)
    assert session.close == datetime(2025, 12, 26, tzinfo=UTC)
    assert session.regular_minutes == 1440
    assert crypto_calendar.SLOTS_PER_DAY == 96


def _utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 1, hour, minute, tzinfo=UTC)


def test_resampling_on_utc_days_anchors_buckets_on_midnight() -> None:
    # Four m15 bars of New Year's Day (no NYSE session): 00:00, 03:45, 04:00 and 23:45 UTC.
    starts = [_utc(0), _utc(3, 45), _utc(4), _utc(23, 45)]
    m15 = pl.DataFrame(
        {
            "ts": starts,
            "open": [1.0, 2.0, 3.0, 4.0],
            "high": [1.5, 2.5, 3.5, 4.5],
            "low": [0.5, 1.5, 2.5, 3.5],
            "close": [1.2, 2.2, 3.2, 4.2],
            "volume": [10, 20, 30, 40],
            "vwap": [1.0, 2.0, 3.0, 4.0],
            "trade_count": [1, 2, 3, 4],
        },
        schema=BAR_SCHEMA,
    )
    day = [crypto_calendar.day_session(date(2026, 1, 1))]
    h4 = resample(m15, Timeframe.H4, day)
    assert h4["ts"].to_list() == [_utc(0), _utc(4), _utc(20)]
    assert h4.row(0)[1:] == (1.0, 2.5, 0.5, 2.2, 30, (10 * 1.0 + 20 * 2.0) / 30, 3)
    h1 = resample(m15, Timeframe.H1, day)
    assert h1["ts"].to_list() == [_utc(0), _utc(3), _utc(4), _utc(23)]
    d1 = resample(m15, Timeframe.D1, day)
    assert d1.rows() == [(_utc(0), 1.0, 4.5, 0.5, 4.2, 100, 3.0, 10)]


def test_request_windows_cover_runs_of_at_most_34_days() -> None:
    days = crypto_calendar.days_between(date(2025, 1, 1), date(2025, 3, 10))  # 69 days
    days.remove(date(2025, 2, 1))  # splits the run: Jan (31) and Feb 2 .. Mar 10 (37)
    windows = crypto_calendar.request_windows(days)
    assert [(w[0], w[-1]) for w in windows] == [
        (date(2025, 1, 1), date(2025, 1, 31)),
        (date(2025, 2, 2), date(2025, 3, 7)),
        (date(2025, 3, 8), date(2025, 3, 10)),
    ]


def test_a_day_is_final_twenty_minutes_after_it_ends() -> None:
    day = date(2026, 1, 1)
    assert not crypto_calendar.final_required(day, datetime(2026, 1, 2, 0, 19, tzinfo=UTC))
    assert crypto_calendar.final_required(day, datetime(2026, 1, 2, 0, 20, tzinfo=UTC))


@pytest.mark.parametrize(
    ("raw", "ticker", "pair"),
    [("x:btcusd", "X:BTCUSD", ("BTC", "USD")), (" X:ETHBTC ", "X:ETHBTC", ("ETH", "BTC")),
     ("X:BTCUSDT", "X:BTCUSDT", ("BTC", "USDT")), ("X:1INCHUSD", "X:1INCHUSD", ("1INCH", "USD"))],
)  # fmt: skip
def test_crypto_pairs_are_accepted(raw: str, ticker: str, pair: tuple[str, str]) -> None:
    assert normalize_ticker(raw) == ticker
    assert is_crypto(ticker)
    assert crypto_pair(ticker) == pair


@pytest.mark.parametrize(
    ("raw", "says"),
    [("X:", "names no crypto pair"), ("X:BTC-USD!", "only letters and digits"),
     ("X:BTC", "quote currency"), ("X:USD", "quote currency"),
     ("X:ABCDEFGHIJKUSD", "1 to 10")],
)  # fmt: skip
def test_malformed_pairs_say_what_is_wrong(raw: str, says: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalize_ticker(raw)
    assert error.value.code == "INVALID_SYMBOL"
    assert says in error.value.message and "X:BTCUSD" in error.value.message


def test_stock_tickers_are_not_crypto() -> None:
    assert normalize_ticker("brk.b") == "BRK.B"
    assert not is_crypto("BRK.B") and not is_crypto("XOM")


def test_universes_refuse_crypto_pairs() -> None:
    assert equities_only(["AAPL", "MSFT"]) == ["AAPL", "MSFT"]
    with pytest.raises(InvalidInput) as error:
        equities_only(["AAPL", "X:BTCUSD"])
    assert "X:BTCUSD" in error.value.message and "watch add" in error.value.message

"""Who gets 5-minute bars: the `symbols.m5` opt-in, SWIFTBOLT_M5 for everyone, and the refusal
of m5 for a symbol not opted in (which changes nothing)."""

from __future__ import annotations

import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.services.m5 import opted_in, require_opted_in
from swiftbolt_pipeline.storage import watchlist


def test_opt_in_is_kept_until_changed_and_never_for_crypto(conn: psycopg.Connection) -> None:
    watchlist.add(conn, ["SPY", "QQQ", "X:BTCUSD"])
    watchlist.add(conn, ["SPY"], m5=True)
    watchlist.add(conn, ["SPY"], window_days=30)  # m5 left as it was
    assert [s.ticker for s in watchlist.m5_symbols(conn)] == ["SPY"]
    assert [s.ticker for s in watchlist.m5_symbols(conn, everyone=True)] == ["QQQ", "SPY"]
    assert opted_in(conn, ["QQQ", "SPY", "IBM"], everyone=False) == ["SPY"]
    assert opted_in(conn, ["QQQ", "IBM"], everyone=True) == ["QQQ", "IBM"]
    watchlist.add(conn, ["SPY"], m5=False)
    assert watchlist.m5_symbols(conn) == []


def test_m5_of_a_symbol_not_opted_in_is_refused_and_changes_nothing(
    conn: psycopg.Connection,
) -> None:
    watchlist.add(conn, ["SPY"], m5=True)
    before = conn.execute("SELECT ticker, m5, is_active FROM symbols ORDER BY 1").fetchall()
    with pytest.raises(InvalidInput) as refused:
        require_opted_in(conn, ["SPY", "AAPL"], everyone=False)
    assert refused.value.code == "INVALID_TIMEFRAME"
    assert "AAPL is not opted in" in refused.value.message
    assert "swiftbolt watch add AAPL --m5" in refused.value.message
    assert conn.execute("SELECT ticker, m5, is_active FROM symbols ORDER BY 1").fetchall() == (
        before
    )
    assert require_opted_in(conn, ["SPY", "AAPL"], everyone=True) == ["SPY", "AAPL"]


@pytest.mark.parametrize(("raw", "expected"), [(None, False), ("1", True), ("off", False)])
def test_swiftbolt_m5_setting(raw: str | None, expected: bool) -> None:
    env = {} if raw is None else {"SWIFTBOLT_M5": raw}
    assert Settings.from_env(env).m5_all is expected


def test_swiftbolt_m5_refuses_a_value_it_cannot_read() -> None:
    with pytest.raises(InvalidInput, match="SWIFTBOLT_M5='maybe' must be 1 or 0"):
        Settings.from_env({"SWIFTBOLT_M5": "maybe"})

"""Bar partition keys are Dagster's multi-partition keys, read back by Dagster's own parsing."""

from __future__ import annotations

from datetime import date

import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.defs.partitions import bar_partitions
from swiftbolt_pipeline.names import days_by_symbol, parse_partition_key, partition_key


def test_keys_round_trip_through_the_real_partitions_definition() -> None:
    key = partition_key("BRK.B", date(2026, 2, 9))
    assert key == "2026-02-09|BRK.B"  # Dagster orders dimensions by name: day, symbol
    parsed = bar_partitions(Settings.from_env()).get_partition_key_from_str(key)
    assert parsed.keys_by_dimension == {"symbol": "BRK.B", "day": "2026-02-09"}
    assert parse_partition_key(key) == ("BRK.B", date(2026, 2, 9))
    assert parse_partition_key(str(key)) == ("BRK.B", date(2026, 2, 9))


@pytest.mark.parametrize("key", ["", "SPY", "2026-02-09|SPY|x", "SPY|2026-02-09"])
def test_anything_else_is_not_a_bar_partition_key(key: str) -> None:
    with pytest.raises(ValueError):
        parse_partition_key(key)


def test_days_by_symbol_groups_and_orders() -> None:
    keys = [
        partition_key("SPY", date(2026, 2, 10)),
        partition_key("AAPL", date(2026, 2, 9)),
        partition_key("SPY", date(2026, 2, 9)),
    ]
    assert days_by_symbol(keys) == {
        "AAPL": [date(2026, 2, 9)],
        "SPY": [date(2026, 2, 9), date(2026, 2, 10)],
    }

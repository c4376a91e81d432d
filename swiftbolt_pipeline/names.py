"""The names the Dagster definitions share with the services, the CLI and the API: asset keys,
run tags and the bar partitions' key format. Plain values, so a service can name an asset or
read a run's tags without loading the definitions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date

import dagster as dg
from dagster_shared.check import CheckError

from swiftbolt_pipeline.core.models import Timeframe

M15_BARS = "m15_bars"
H1_BARS = "h1_bars"
H4_BARS = "h4_bars"
D1_BARS = "d1_bars"
W1_BARS = "w1_bars"
MO1_BARS = "mo1_bars"
BAR_ASSETS = {
    Timeframe.M15: M15_BARS,
    Timeframe.H1: H1_BARS,
    Timeframe.H4: H4_BARS,
    Timeframe.D1: D1_BARS,
    Timeframe.W1: W1_BARS,
    Timeframe.MO1: MO1_BARS,
}
DERIVED_ASSETS = (H1_BARS, H4_BARS)
# Partitioned symbol x session (bars_job) ...
SESSION_ASSETS = (M15_BARS, H1_BARS, H4_BARS)
# ... and symbol x year (daily_job): the official d1 and its roll-ups.
DAILY_ASSETS = (D1_BARS, W1_BARS, MO1_BARS)

# Opt-in 5-minute bars: their own asset, partitioned by the `m5_symbols` dynamic partitions
# (only the opted-in stocks) x XNYS sessions, so symbols without m5 add no partition. The
# dimension names are the stock ones: `partition_key` and `days_by_symbol` serve it too.
M5_BARS = "m5_bars"
M5_SYMBOLS_PARTITIONS = "m5_symbols"

# Bar partitions: the `symbols` dynamic partitions x XNYS sessions.
SYMBOLS_PARTITIONS = "symbols"
SYMBOL_DIMENSION = "symbol"
DAY_DIMENSION = "day"
YEAR_DIMENSION = "year"

# Dagster's tags of a run covering a partition range (set by single-run backfills).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PRIORITY_TAG = "dagster/priority"

# Our run tags: the symbol a run was launched for (or its symbols, comma-separated, when a
# provider serving many symbols per request fetches several in one run), and what launched it.
SYMBOL_TAG = "swiftbolt/symbol"
SYMBOLS_TAG = "swiftbolt/symbols"
TRIGGER_TAG = "swiftbolt/trigger"
# The execution dates of the splits a split refetch replaces bars for.
SPLITS_TAG = "swiftbolt/splits"
# Fetch only the sessions that lack their final bars (set by the finalize schedule).
MISSING_ONLY_TAG = "swiftbolt/missing-only"
# Marks the runs of one soak worker, so the soak can find them again.
SOAK_WORKER_TAG = "swiftbolt/soak_worker"

# Dagster parses a multi-partition key by its definition's dimension names alone; the day
# dimension's dates play no part, so this definition parses every bar partition key.
_KEY_FORMAT = dg.MultiPartitionsDefinition(
    {
        SYMBOL_DIMENSION: dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS),
        DAY_DIMENSION: dg.DailyPartitionsDefinition(start_date="1970-01-01"),
    }
)


def partition_key(symbol: str, day: date) -> dg.MultiPartitionKey:
    """The bar partition key of `symbol` on `day` (Dagster writes it `day|symbol`)."""
    return dg.MultiPartitionKey({SYMBOL_DIMENSION: symbol, DAY_DIMENSION: day.isoformat()})


def parse_partition_key(key: str) -> tuple[str, date]:
    """`(symbol, day)` of a bar partition key; ValueError when `key` is not one."""
    try:
        dimensions = _KEY_FORMAT.get_partition_key_from_str(key).keys_by_dimension
    except CheckError as error:
        raise ValueError(f"not a bar partition key: {key!r}") from error
    return dimensions[SYMBOL_DIMENSION], date.fromisoformat(dimensions[DAY_DIMENSION])


def days_by_symbol(keys: Iterable[str]) -> dict[str, list[date]]:
    """Group a run's partition keys by symbol, days in order."""
    grouped: dict[str, list[date]] = defaultdict(list)
    for key in keys:
        symbol, day = parse_partition_key(key)
        grouped[symbol].append(day)
    return {symbol: sorted(days) for symbol, days in sorted(grouped.items())}


def range_tags(
    first_symbol: str, last_symbol: str, first_day: date, last_day: date
) -> dict[str, str]:
    """Tags making one run cover the rectangle symbols x days (single-run backfill policy)."""
    return {
        RANGE_START_TAG: partition_key(first_symbol, first_day),
        RANGE_END_TAG: partition_key(last_symbol, last_day),
    }


_YEAR_KEY_FORMAT = dg.MultiPartitionsDefinition(
    {
        SYMBOL_DIMENSION: dg.DynamicPartitionsDefinition(name=SYMBOLS_PARTITIONS),
        YEAR_DIMENSION: dg.StaticPartitionsDefinition([str(y) for y in range(1970, 2200)]),
    }
)


def year_partition_key(symbol: str, year: int) -> dg.MultiPartitionKey:
    """The daily partition key of `symbol` in `year` (Dagster writes it `symbol|year`)."""
    return dg.MultiPartitionKey({SYMBOL_DIMENSION: symbol, YEAR_DIMENSION: str(year)})


def years_by_symbol(keys: Iterable[str]) -> dict[str, list[int]]:
    """Group a daily run's partition keys by symbol, years in order."""
    grouped: dict[str, list[int]] = defaultdict(list)
    for key in keys:
        try:
            dims = _YEAR_KEY_FORMAT.get_partition_key_from_str(key).keys_by_dimension
        except CheckError as error:
            raise ValueError(f"not a daily partition key: {key!r}") from error
        grouped[dims[SYMBOL_DIMENSION]].append(int(dims[YEAR_DIMENSION]))
    return {symbol: sorted(years) for symbol, years in sorted(grouped.items())}


def year_range_tags(first_symbol: str, last_symbol: str, first: int, last: int) -> dict[str, str]:
    """Tags making one run cover the rectangle symbols x years (single-run backfill policy)."""
    return {
        RANGE_START_TAG: year_partition_key(first_symbol, first),
        RANGE_END_TAG: year_partition_key(last_symbol, last),
    }


# Universe mode: one partition per universe x session, whatever the universe's size.
UNIVERSE_M15_BARS = "universe_m15_bars"
UNIVERSE_DERIVED_BARS = "universe_derived_bars"
UNIVERSE_D1_BARS = "universe_d1_bars"
# What `swiftbolt universe backfill` materializes: the complete job.
UNIVERSE_ASSETS = (UNIVERSE_M15_BARS, UNIVERSE_DERIVED_BARS, UNIVERSE_D1_BARS)
UNIVERSES_PARTITIONS = "universes"
UNIVERSE_DIMENSION = "universe"
UNIVERSE_TAG = "swiftbolt/universe"

_UNIVERSE_KEY_FORMAT = dg.MultiPartitionsDefinition(
    {
        UNIVERSE_DIMENSION: dg.DynamicPartitionsDefinition(name=UNIVERSES_PARTITIONS),
        DAY_DIMENSION: dg.DailyPartitionsDefinition(start_date="1970-01-01"),
    }
)


def universe_partition_key(universe: str, day: date) -> dg.MultiPartitionKey:
    """The partition key of `universe` on `day` (Dagster writes it `day|universe`)."""
    return dg.MultiPartitionKey({UNIVERSE_DIMENSION: universe, DAY_DIMENSION: day.isoformat()})


def days_by_universe(keys: Iterable[str]) -> dict[str, list[date]]:
    """Group a run's universe partition keys by universe, days in order."""
    grouped: dict[str, list[date]] = defaultdict(list)
    for key in keys:
        dimensions = _UNIVERSE_KEY_FORMAT.get_partition_key_from_str(key).keys_by_dimension
        grouped[dimensions[UNIVERSE_DIMENSION]].append(
            date.fromisoformat(dimensions[DAY_DIMENSION])
        )
    return {name: sorted(days) for name, days in sorted(grouped.items())}


def universe_range_tags(universe: str, first_day: date, last_day: date) -> dict[str, str]:
    """Tags making one run cover `universe`'s sessions `first_day`..`last_day`."""
    return {
        RANGE_START_TAG: universe_partition_key(universe, first_day),
        RANGE_END_TAG: universe_partition_key(universe, last_day),
        UNIVERSE_TAG: universe,
    }


# Crypto pairs (`X:` tickers): their own assets and partitions, the `crypto_symbols` dynamic
# partitions x UTC days (every day, no holidays), so stock sessions and crypto days never mix.
# The dimension names are the stock ones, so `partition_key` and `days_by_symbol` serve both.
CRYPTO_M15_BARS = "crypto_m15_bars"
CRYPTO_BAR_ASSETS = {
    Timeframe.M15: CRYPTO_M15_BARS,
    Timeframe.H1: "crypto_h1_bars",
    Timeframe.H4: "crypto_h4_bars",
    Timeframe.D1: "crypto_d1_bars",
}
CRYPTO_DERIVED_ASSETS = tuple(
    CRYPTO_BAR_ASSETS[tf] for tf in (Timeframe.H1, Timeframe.H4, Timeframe.D1)
)
CRYPTO_SYMBOLS_PARTITIONS = "crypto_symbols"

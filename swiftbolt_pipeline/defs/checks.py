"""Asset checks evaluated on every run's partitions, against what was actually stored.

They run inside the assets (the checks need the run's partition range, which a separate
partitioned check can't see per symbol), and show in the UI and the backfill summary."""

from collections.abc import Mapping
from datetime import date

import dagster as dg
import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar, quality
from swiftbolt_pipeline.core.clean import PROBLEM_RULES
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.core.resample import regular_session
from swiftbolt_pipeline.names import M15_BARS
from swiftbolt_pipeline.storage import bars as bar_store

BAR_COUNTS = "bar_counts_match_calendar"
OHLC_SANE = "ohlc_sane"
NO_DUPLICATES = "no_duplicate_timestamps"
CONSISTENT = "consistent_with_m15"
PROVIDER_DATA = "provider_data_clean"
FETCH_COMPLETE = "fetch_complete"


def m15_check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(BAR_COUNTS, asset=M15_BARS, description="Bars per session vs the "
                          "NYSE calendar: 26 on a full day, 14 on an early close; empty "
                          "intervals are reported (warning), extra or off-grid bars fail."),
        dg.AssetCheckSpec(OHLC_SANE, asset=M15_BARS,
                          description="low <= open, close <= high and volume >= 0."),
        dg.AssetCheckSpec(NO_DUPLICATES, asset=M15_BARS,
                          description="One bar per timestamp per symbol."),
        dg.AssetCheckSpec(PROVIDER_DATA, asset=M15_BARS, description="Provider bars "
                          "rejected by the cleaning rules (core/clean.py); warns when any."),
        dg.AssetCheckSpec(FETCH_COMPLETE, asset=M15_BARS, description="Every symbol of the "
                          "run was fetched; one that failed (unknown ticker, provider down) is "
                          "named here and retried by the gap sensor, the others are stored."),
    ]  # fmt: skip


def derived_check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(BAR_COUNTS, asset=asset, description="Buckets per session vs the "
                          "calendar (7/2/1 on a full day, 4/1/1 on an early close)."),
        dg.AssetCheckSpec(CONSISTENT, asset=asset, description="Every bar equals a fresh "
                          "resample of the stored m15 bars (first/last, extremes, sums)."),
    ]  # fmt: skip


def _stored(
    conn: psycopg.Connection,
    symbol_id: int,
    timeframe: Timeframe,
    days: list[date],
    cal: calendar.DayCalendar = calendar.NYSE,
) -> pl.DataFrame:
    bars = bar_store.read_bars(conn, symbol_id, timeframe, days[0], days[-1], cal.zone)
    wanted = pl.Series(days, dtype=pl.Date).implode()
    day = pl.col("ts").dt.convert_time_zone(str(cal.zone)).dt.date()
    return bars.filter(day.is_in(wanted)).select(list(BAR_SCHEMA))


def _count_result(asset: str, reports: Mapping[str, quality.CountReport]) -> dg.AssetCheckResult:
    short = {f"{s} {d}": n for s, r in reports.items() for d, n in r.short_days.items()}
    excess = {f"{s} {d}": n for s, r in reports.items() for d, n in r.excess_days.items()}
    off_grid = sum(r.off_grid for r in reports.values())
    outside = sum(r.outside_session for r in reports.values())
    passed = all(r.passed for r in reports.values())
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=BAR_COUNTS,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if not passed else dg.AssetCheckSeverity.WARN,
        metadata={
            "expected_bars": sum(r.expected for r in reports.values()),
            "stored_bars": sum(r.stored for r in reports.values()),
            "sessions_with_empty_intervals": len(short),
            "missing_intervals": sum(short.values()),
            "sessions_with_extra_bars": len(excess),
            "off_grid_bars": off_grid,
            "bars_outside_session": outside,
            "examples": dg.MetadataValue.json(dict(list({**excess, **short}.items())[:10])),
        },
    )


def check_m15(
    conn: psycopg.Connection,
    plan: Mapping[str, list[date]],
    ids: Mapping[str, int],
    *,
    extended_hours: bool = False,
    timeframe: Timeframe = Timeframe.M15,
    asset: str = M15_BARS,
) -> list[dg.AssetCheckResult]:
    """With extended hours kept, the calendar count applies to the regular-session bars.
    `timeframe`/`asset`: the raw series checked (m15, or the opt-in m5 of `m5_bars`)."""
    counts: dict[str, quality.CountReport] = {}
    bad_ohlc = duplicates = 0
    for symbol, days in plan.items():
        bars = _stored(conn, ids[symbol], timeframe, days)
        sessions = [calendar.session(d) for d in days]
        regular = regular_session(bars, sessions) if extended_hours else bars
        counts[symbol] = quality.check_counts(regular, sessions, timeframe)
        bad_ohlc += quality.ohlc_violations(bars).height
        duplicates += quality.duplicate_timestamps(bars)
    return [
        _count_result(asset, counts),
        _none_found(asset, OHLC_SANE, "violations", bad_ohlc),
        _none_found(asset, NO_DUPLICATES, "duplicates", duplicates),
    ]


def _none_found(asset: str, check: str, counted: str, count: int) -> dg.AssetCheckResult:
    """A check that passes when it counted none of what it looks for."""
    return dg.AssetCheckResult(
        asset_key=asset, check_name=check, passed=count == 0, metadata={counted: count}
    )


def check_provider_data(rejected: Mapping[str, int]) -> dg.AssetCheckResult:
    total = sum(rejected.values())
    return dg.AssetCheckResult(
        asset_key=M15_BARS,
        check_name=PROVIDER_DATA,
        passed=total == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "rejected_bars": total,
            **{f"rejected_{rule}": rejected.get(rule, 0) for rule in PROBLEM_RULES},
        },
    )


def check_fetch_complete(failures: Mapping[str, str], asset: str = M15_BARS) -> dg.AssetCheckResult:
    """`failures`: symbol -> "[CODE] message" of the symbols that failed."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=FETCH_COMPLETE,
        passed=not failures,
        metadata={
            "failed_symbols": len(failures),
            "failures": dg.MetadataValue.json(dict(list(failures.items())[:20])),
        },
    )


def check_derived(
    conn: psycopg.Connection,
    timeframe: Timeframe,
    plan: Mapping[str, list[date]],
    ids: Mapping[str, int],
    *,
    asset: str | None = None,
    cal: calendar.DayCalendar = calendar.NYSE,
) -> list[dg.AssetCheckResult]:
    """`asset` (default `<tf>_bars`) and `cal` serve the crypto assets on their calendar."""
    asset = asset or f"{timeframe.value}_bars"
    counts: dict[str, quality.CountReport] = {}
    mismatches = 0
    for symbol, days in plan.items():
        sessions = [cal.session(d) for d in days]
        derived = _stored(conn, ids[symbol], timeframe, days, cal)
        m15 = _stored(conn, ids[symbol], Timeframe.M15, days, cal)
        counts[symbol] = quality.check_counts(derived, sessions, timeframe, cal.zone)
        mismatches += quality.derived_mismatches(m15, derived, timeframe, sessions).height
    return [
        _count_result(asset, counts),
        _none_found(asset, CONSISTENT, "mismatched_buckets", mismatches),
    ]

"""Explicit rules for bad provider data, applied to every batch of m15 bars before it is stored.

Pure (polars, no I/O). Which layer owns what:

* The provider clients (`providers/polygon.py`, `providers/tradier.py`) own the *shape* of a
  response: a payload that is not the documented JSON, or a bar with a missing, non-numeric or
  non-finite (NaN/Infinity) price, volume or time, makes the whole response
  `MALFORMED_RESPONSE` at parse time. A response like that is broken as a whole; none of it is
  stored and the fetch fails with a clear code instead of guessing which bars are intact.
  The Tradier client is stricter still (an off-grid or duplicated bar fails today's refresh,
  which is retried 15 minutes later); these rules then hold for it as a second line.
* This module owns the *meaning* of well-typed bars. Every bar is kept or dropped by exactly one
  rule, checked in this order, and counted under it:

  1. `null_fields`: a null or non-finite ts, open, high, low, close or volume. Rejected. (The
     parsers already refuse these; the rule keeps frames from any other source honest.)
  2. `outside_sessions`: the bar's exchange date is not one of the requested sessions (another
     day, a weekend, a holiday). Dropped.
  3. `extended_hours`: a requested session, but outside `open <= ts < close`. Dropped. Routine:
     Polygon always serves pre- and post-market bars, so this is not a data problem.
  4. `off_grid`: not on the bar grid counted from the session open (15 minutes for m15, 5 for
     the opt-in m5). Rejected.
  5. `negative_volume`: volume < 0. Rejected.
  6. `non_positive_price`: an open, high, low or close <= 0. Rejected: no stock trades at or
     below zero, and the database refuses such a row (a CHECK), which would fail the whole
     batch instead of dropping one bar.
  7. `ohlc_inconsistent`: high < low, high < max(open, close) or low > min(open, close).
     Rejected, never repaired: widening high/low would store a price nobody traded, and the
     `ohlc_sane` asset check stays a hard guarantee. The interval is then missing, which the
     bar-count check reports as an empty interval.
  8. Duplicate timestamps among the bars that passed 1-7 (including a page served twice by a
     buggy cursor): exact copies collapse to one silently (`duplicate_identical`, routine);
     copies that differ keep the one served last and count the others (`duplicate_conflict`).

`served == kept + sum(all counts)` always holds. One guard is not per bar: when at least as many
in-session bars are off the grid as are kept (`CleanReport.wrong_interval`), the provider served
another bar size (5- or 1-minute bars), and the bars that happen to sit on the grid are not
15-minute bars either; the caller fails the whole response as `MALFORMED_RESPONSE`.

`CleanReport.rejected()` gives the counts of the rules that mean the provider sent bad data (all
but `extended_hours` and `duplicate_identical`), for run metadata and asset checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from zoneinfo import ZoneInfo

import polars as pl

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ, Session
from swiftbolt_pipeline.core.models import BAR_SCHEMA

MINUTE_US = 60_000_000

NULL_FIELDS = "null_fields"
OUTSIDE_SESSIONS = "outside_sessions"
EXTENDED_HOURS = "extended_hours"
OFF_GRID = "off_grid"
NEGATIVE_VOLUME = "negative_volume"
NON_POSITIVE_PRICE = "non_positive_price"
OHLC_INCONSISTENT = "ohlc_inconsistent"
DUPLICATE_CONFLICT = "duplicate_conflict"
DUPLICATE_IDENTICAL = "duplicate_identical"

# Rules in the order they are applied; each bar is counted under the first one it breaks.
ROW_RULES = (
    NULL_FIELDS,
    OUTSIDE_SESSIONS,
    EXTENDED_HOURS,
    OFF_GRID,
    NEGATIVE_VOLUME,
    NON_POSITIVE_PRICE,
    OHLC_INCONSISTENT,
)
RULES = (*ROW_RULES, DUPLICATE_CONFLICT, DUPLICATE_IDENTICAL)
# Dropped by design, not a sign of bad provider data.
ROUTINE = frozenset({EXTENDED_HOURS, DUPLICATE_IDENTICAL})
# The rules whose counts mean bad provider data (what `CleanReport.rejected()` reports).
PROBLEM_RULES = tuple(rule for rule in RULES if rule not in ROUTINE)

_PRICES = ("open", "high", "low", "close")
_SEQ, _DAY, _TS, _OPEN, _CLOSE, _RULE = "__seq", "__day", "__ts", "__open", "__close", "__rule"


@dataclass
class CleanReport:
    """How many bars a batch had, how many were kept, and how many each rule dropped."""

    served: int = 0
    kept: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))

    def rejected(self) -> dict[str, int]:
        """Non-zero counts of the rules that mean bad provider data."""
        return {rule: n for rule in PROBLEM_RULES if (n := self.counts.get(rule, 0))}

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected().values())

    @property
    def wrong_interval(self) -> bool:
        """Mostly off-grid: another bar size was served, not a few misplaced bars."""
        off_grid = self.counts.get(OFF_GRID, 0)
        return off_grid > 0 and off_grid >= self.kept

    def add(self, other: CleanReport) -> None:
        self.served += other.served
        self.kept += other.kept
        for rule, n in other.counts.items():
            self.counts[rule] = self.counts.get(rule, 0) + n

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "counts"} | {
            rule: self.counts.get(rule, 0) for rule in RULES
        }


def merge_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    """Add per-rule counts into a running total (e.g. `SymbolIngest.rejected`)."""
    for rule, n in counts.items():
        if n:
            into[rule] = into.get(rule, 0) + n


def _session_bounds(sessions: Sequence[Session], extended_hours: bool) -> pl.DataFrame:
    """Per day the span bars may start in: regular hours, or 04:00-20:00 ET when kept."""
    by_day = {s.day: s for s in sessions}.values()
    opens = [s.extended_open if extended_hours else s.open for s in by_day]
    closes = [s.extended_close if extended_hours else s.close for s in by_day]
    return pl.DataFrame(
        {
            _DAY: [s.day for s in by_day],
            _OPEN: [round(t.timestamp() * 1e6) for t in opens],
            _CLOSE: [round(t.timestamp() * 1e6) for t in closes],
        },
        schema={_DAY: pl.Date, _OPEN: pl.Int64, _CLOSE: pl.Int64},
    )


def _not_finite(column: str) -> pl.Expr:
    col = pl.col(column)
    if column == "volume":
        return col.is_null()
    return (~col.is_finite()).fill_null(True)


def _rule(bar_us: int) -> pl.Expr:
    ts, open_, close = pl.col(_TS), pl.col(_OPEN), pl.col(_CLOSE)
    high, low = pl.col("high"), pl.col("low")
    broken = pl.col("ts").is_null()
    for column in (*_PRICES, "volume"):
        broken = broken | _not_finite(column)
    inconsistent = (
        (high < low)
        | (high < pl.max_horizontal("open", "close"))
        | (low > pl.min_horizontal("open", "close"))
    )
    return (
        pl.when(broken)
        .then(pl.lit(NULL_FIELDS))
        .when(open_.is_null())
        .then(pl.lit(OUTSIDE_SESSIONS))
        .when((ts < open_) | (ts >= close))
        .then(pl.lit(EXTENDED_HOURS))
        .when((ts - open_) % bar_us != 0)
        .then(pl.lit(OFF_GRID))
        .when(pl.col("volume") < 0)
        .then(pl.lit(NEGATIVE_VOLUME))
        .when(pl.min_horizontal(*_PRICES) <= 0)
        .then(pl.lit(NON_POSITIVE_PRICE))
        .when(inconsistent)
        .then(pl.lit(OHLC_INCONSISTENT))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(_RULE)
    )


def clean_m15(
    raw: pl.DataFrame,
    sessions: Sequence[Session],
    *,
    extended_hours: bool = False,
    zone: ZoneInfo = EXCHANGE_TZ,
    bar_minutes: int = 15,
) -> tuple[pl.DataFrame, CleanReport]:
    """The bars of `sessions` in `raw` that pass every rule, one per timestamp, ordered by ts
    (BAR_SCHEMA columns), and the count of bars each rule dropped. Regular-session bars only,
    unless `extended_hours` keeps 04:00-20:00 ET (the grid is the same). `zone`: the zone whose
    calendar date is a bar's session day (UTC for crypto's whole-day sessions). `bar_minutes`:
    the grid, 15 for m15 and 5 for the opt-in m5 bars (the rules are the same)."""
    columns = list(BAR_SCHEMA)
    report = CleanReport(served=raw.height)
    if raw.is_empty():
        return raw.select(columns), report
    ts = pl.col("ts").dt.epoch("us")
    day = pl.col("ts").dt.convert_time_zone(str(zone)).dt.date()
    judged = (
        raw.select(columns)
        .with_row_index(_SEQ)
        .with_columns(ts.alias(_TS), day.alias(_DAY))
        .join(_session_bounds(sessions, extended_hours), on=_DAY, how="left", maintain_order="left")
        .with_columns(_rule(bar_minutes * MINUTE_US))
    )
    for rule, n in judged.group_by(_RULE).len().drop_nulls(_RULE).iter_rows():
        report.counts[rule] = n
    valid = judged.filter(pl.col(_RULE).is_null()).select(_SEQ, *columns)
    # Exact copies first (a repeated page), keeping the copy served last...
    distinct = valid.unique(subset=columns, keep="last", maintain_order=True)
    report.counts[DUPLICATE_IDENTICAL] = valid.height - distinct.height
    # ...then differing bars for one timestamp: the last served wins.
    kept = distinct.sort(_SEQ).unique(subset=["ts"], keep="last").sort("ts")
    report.counts[DUPLICATE_CONFLICT] = distinct.height - kept.height
    report.kept = kept.height
    return kept.select(columns), report

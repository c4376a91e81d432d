"""Coverage gaps: which expected sessions are missing, as calendar runs (the `gaps`
of `swiftbolt coverage`).

A gap is reported per contiguous run of missing sessions so one backfill can fill it; a
holiday inside a gap does not split it, a present session does.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from swiftbolt_pipeline.core.calendar import sessions_between
from swiftbolt_pipeline.core.planning import contiguous_runs


@dataclass(frozen=True)
class Gap:
    """Sessions `start`..`end` (inclusive) are all missing; `sessions` counts them."""

    start: date
    end: date
    sessions: int

    def to_json(self) -> dict[str, str | int]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "sessions": self.sessions,
        }


def find_gaps(expected: Sequence[date], present: Collection[date]) -> list[Gap]:
    """The expected sessions not in `present`, grouped into contiguous runs, in date order."""
    missing = [day for day in expected if day not in present]
    return [Gap(run[0], run[-1], len(run)) for run in contiguous_runs(missing)]


def window_sessions(today: date, window_days: int, history_start: date | None) -> list[date]:
    """Sessions from max(today - window_days, history_start) through today, inclusive.

    `window_days` counts calendar days, as the watchlist's `window_days` does.
    """
    if window_days < 0:
        raise ValueError(f"window_days must be >= 0, got {window_days}")
    start = today - timedelta(days=window_days)
    if history_start is not None:
        start = max(start, history_start)
    return sessions_between(start, today)

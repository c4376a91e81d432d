"""Tradier time & sales: today's 15-minute (or 5-minute, for m5) bars, complete and
regular-session only.

Tradier serves the bar still in progress and speaks naive America/New_York wall-clock time, so
this client converts to UTC bar starts and keeps only bars that ended by `now` inside the
session: a stored bar must never change later. The token travels only in the Authorization
header, so it never appears in a URL, a log line or an error message."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

import polars as pl

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ, Session
from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.errors import MALFORMED_RESPONSE, ProviderError
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Provider
from swiftbolt_pipeline.providers.http import (
    ClientOptions,
    ProviderClient,
    RequestStats,
    TokenLimiter,
)

log = logging.getLogger(__name__)

_PRICE_FIELDS = ("open", "high", "low", "close")
_WALL_CLOCK = "%Y-%m-%d %H:%M"


class TradierClient(ProviderClient):
    provider = Provider.TRADIER

    def __init__(
        self,
        base_url: str,
        token: str,
        limiter: TokenLimiter,
        clock: Clock,
        **options: Unpack[ClientOptions],
    ) -> None:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        super().__init__(base_url, limiter, clock, headers=headers, secrets=[token], **options)

    def fetch_session_m15(
        self,
        ticker: str,
        session: Session,
        now: datetime,
        stats: RequestStats,
        *,
        bar_minutes: int = 15,
    ) -> pl.DataFrame:
        """The complete regular-session 15-minute bars of `ticker` in `session` as of `now`
        (`bar_minutes` 5: Tradier's `5min` interval, for m5).

        No request is made before the first bar can have completed: it would only cost a token.
        """
        bar = timedelta(minutes=bar_minutes)
        end = min(session.close, now)
        if end < session.open + bar:
            return pl.DataFrame(schema=BAR_SCHEMA)
        params = {
            "symbol": ticker,
            "interval": f"{bar_minutes}min",
            "start": _wall_clock(session.open),
            "end": _wall_clock(end),
            "session_filter": "open",
        }
        log.info("tradier %s %s..%s", ticker, params["start"], params["end"])
        payload = self._client.get_json(
            f"{self.base_url}/v1/markets/timesales", stats, params=params
        )
        rows = [self._parse_bar(bar, stats) for bar in self._series(payload, stats)]
        # A bar off the grid means another interval was served; stored, it would corrupt
        # every derived timeframe.
        if any((row["ts"] - session.open) % bar for row in rows):
            raise self._malformed(f"bar not aligned to the {bar_minutes}-minute grid", stats)
        frame = _to_frame(rows)
        if frame["ts"].is_duplicated().any():
            raise self._malformed("duplicate bar start times", stats)
        # Tradier includes the bar in progress and may ignore session_filter: filter here too.
        return frame.filter(
            (pl.col("ts") >= session.open.astimezone(UTC))
            & (pl.col("ts") < session.close.astimezone(UTC))
            & (pl.col("ts") <= now.astimezone(UTC) - bar)
        )

    def _series(self, payload: Any, stats: RequestStats) -> list[Any]:
        """`series.data` as a list: Tradier sends one bar as a bare object, and a day without
        trades as `"series": "null"` (a string; JSON null is accepted too)."""
        if not isinstance(payload, dict) or "series" not in payload:
            raise self._malformed("response has no `series`", stats)
        series = payload["series"]
        if series is None or series == "null":
            return []
        if not isinstance(series, dict):
            raise self._malformed("`series` is not an object", stats)
        data = series.get("data")
        if data is None:
            return []
        if isinstance(data, dict):
            return [data]
        if not isinstance(data, list):
            raise self._malformed("`series.data` is neither a list nor an object", stats)
        return data

    def _parse_bar(self, bar: Any, stats: RequestStats) -> dict[str, Any]:
        if not isinstance(bar, dict):
            raise self._malformed(f"bar is not an object: {bar!r:.120}", stats)
        vwap = bar.get("vwap")
        if not all(_is_number(bar.get(key)) for key in (*_PRICE_FIELDS, "volume")) or (
            vwap is not None and not _is_number(vwap)
        ):
            raise self._malformed(f"bar with missing or non-numeric fields: {bar!r:.120}", stats)
        ts = _bar_start(bar.get("time"), bar.get("timestamp"))
        if ts is None:
            raise self._malformed(f"bar with a bad or inconsistent time: {bar!r:.120}", stats)
        return {"ts": ts, **{key: bar[key] for key in (*_PRICE_FIELDS, "volume")}, "vwap": vwap}

    def _malformed(self, message: str, stats: RequestStats) -> ProviderError:
        return ProviderError(
            MALFORMED_RESPONSE, message, provider=self.provider, requests=stats.requests
        )


def _wall_clock(instant: datetime) -> str:
    """Tradier's `start`/`end`: naive exchange wall-clock time."""
    return instant.astimezone(EXCHANGE_TZ).strftime(_WALL_CLOCK)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bar_start(time: Any, timestamp: Any) -> datetime | None:
    """The bar start in UTC, or None when unusable.

    `timestamp` (epoch seconds) is unambiguous, so it wins; the naive ET `time` must agree with
    it in either DST fold (a mismatch means one of them is wrong). Without `timestamp`, `time` is
    used, with its fold only mattering in the 01:00-02:00 overnight hour, never in a session."""
    if timestamp is not None and not _is_number(timestamp):
        return None
    try:
        from_epoch = None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    candidates: set[datetime] = set()
    if time is not None:
        if not isinstance(time, str):
            return None
        try:
            naive = datetime.fromisoformat(time)
        except ValueError:
            return None
        if naive.tzinfo is not None:
            candidates = {naive.astimezone(UTC)}
        else:
            candidates = {
                naive.replace(tzinfo=EXCHANGE_TZ, fold=fold).astimezone(UTC) for fold in (0, 1)
            }
    if from_epoch is not None:
        return from_epoch if not candidates or from_epoch in candidates else None
    return min(candidates) if candidates else None


def _to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=BAR_SCHEMA)
    return pl.DataFrame(
        {
            "ts": [r["ts"] for r in rows],
            "open": [float(r["open"]) for r in rows],
            "high": [float(r["high"]) for r in rows],
            "low": [float(r["low"]) for r in rows],
            "close": [float(r["close"]) for r in rows],
            "volume": [round(r["volume"]) for r in rows],
            "vwap": [None if r["vwap"] is None else float(r["vwap"]) for r in rows],
            "trade_count": [None for _ in rows],
        },
        schema=BAR_SCHEMA,
    ).sort("ts")

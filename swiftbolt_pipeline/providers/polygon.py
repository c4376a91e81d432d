"""Polygon aggregates: 15-minute bars for one ticker over a range of days, every page followed.

`limit` counts base minute aggregates (max 50000), so the caller plans ranges of about 50
sessions; a server may still paginate at any size, and `next_url` carries a cursor but not the
key, which travels in the Authorization header so it never appears in a URL."""

from __future__ import annotations

import logging
import math
from datetime import date
from typing import Any, Unpack
from urllib.parse import urlsplit

import polars as pl

from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.models import BAR_SCHEMA
from swiftbolt_pipeline.core.ratemath import page_jitter
from swiftbolt_pipeline.providers.errors import MALFORMED_RESPONSE, ProviderError
from swiftbolt_pipeline.providers.http import (
    ClientOptions,
    ProviderClient,
    RequestStats,
    TokenLimiter,
)

log = logging.getLogger(__name__)

MAX_LIMIT = 50_000
_NUMERIC_FIELDS = ("t", "o", "h", "l", "c", "v")


class PolygonApi(ProviderClient):
    """What every Polygon endpoint client shares: the key as a Bearer header, `next_url`
    pagination confined to the configured host, and payload errors as MALFORMED_RESPONSE."""

    provider = "polygon"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        limiter: TokenLimiter,
        clock: Clock,
        **options: Unpack[ClientOptions],
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        super().__init__(base_url, limiter, clock, headers=headers, secrets=[api_key], **options)

    def _next_page(self, payload: dict[str, Any], stats: RequestStats) -> str | None:
        next_url = payload.get("next_url")
        if not next_url:
            return None
        if not isinstance(next_url, str):
            raise self._malformed("next_url is not a string", stats)
        # The bearer token must only ever go to the configured host, over the same scheme.
        target, base = urlsplit(next_url), urlsplit(self.base_url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise self._malformed("next_url points at another host or scheme", stats)
        return next_url

    def _malformed(self, message: str, stats: RequestStats) -> ProviderError:
        return ProviderError(
            MALFORMED_RESPONSE, message, provider=self.provider, requests=stats.requests
        )


class PolygonClient(PolygonApi):
    """Polygon aggregates: 15-minute bars of one ticker."""

    def fetch_m15(self, ticker: str, first: date, last: date, stats: RequestStats) -> pl.DataFrame:
        """All 15-minute bars of `ticker` from `first` to `last` (exchange days, inclusive)."""
        url: str | None = (
            f"{self.base_url}/v2/aggs/ticker/{ticker}/range/15/minute/"
            f"{first.isoformat()}/{last.isoformat()}"
        )
        params: dict[str, str] | None = {"adjusted": "true", "sort": "asc", "limit": str(MAX_LIMIT)}
        rows: list[dict[str, Any]] = []
        page = 0
        while url:
            page += 1
            log.info("polygon %s %s..%s page %d", ticker, first, last, page)
            payload = self._client.get_json(url, stats, params=params)
            rows.extend(self._results(payload, stats))
            url, params = self._next_page(payload, stats), None
            if url:
                self.clock.sleep(page_jitter(self.rng))
        return _to_frame(rows)

    def _results(self, payload: Any, stats: RequestStats) -> list[dict[str, Any]]:
        if not isinstance(payload, dict) or payload.get("status") not in ("OK", "DELAYED"):
            raise self._malformed("response is not an OK aggregates payload", stats)
        results = payload.get("results") or []
        if not isinstance(results, list):
            raise self._malformed("`results` is not a list", stats)
        for bar in results:
            if not isinstance(bar, dict) or not all(
                _is_number(bar.get(key)) for key in _NUMERIC_FIELDS
            ):
                raise self._malformed(
                    f"bar with missing or non-numeric fields: {bar!r:.120}", stats
                )
        return results


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _to_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=BAR_SCHEMA)
    raw = pl.DataFrame(
        {
            "t": [r["t"] for r in rows],
            "o": [float(r["o"]) for r in rows],
            "h": [float(r["h"]) for r in rows],
            "l": [float(r["l"]) for r in rows],
            "c": [float(r["c"]) for r in rows],
            "v": [float(r["v"]) for r in rows],
            "vw": [float(r["vw"]) if _is_number(r.get("vw")) else None for r in rows],
            "n": [int(r["n"]) if _is_number(r.get("n")) else None for r in rows],
        },
        schema_overrides={"t": pl.Int64, "vw": pl.Float64, "n": pl.Int64},
    )
    return raw.select(
        pl.from_epoch("t", time_unit="ms")
        .dt.replace_time_zone("UTC")
        .cast(BAR_SCHEMA["ts"])
        .alias("ts"),
        pl.col("o").alias("open"),
        pl.col("h").alias("high"),
        pl.col("l").alias("low"),
        pl.col("c").alias("close"),
        pl.col("v").round(0).cast(pl.Int64).alias("volume"),
        pl.col("vw").alias("vwap"),
        pl.col("n").alias("trade_count"),
    )

"""Polygon reference data: stock splits of one ticker (`GET /v3/reference/splits`).

Every request (page, retry) goes through `ResilientClient`, so it takes a token from the same
shared PostgreSQL bucket as the aggregates and trips the same circuit breaker. The key travels
in the Authorization header, never in a URL; `next_url` is followed on the configured host.

Dividends are not fetched: Polygon's `adjusted=true` aggregates are adjusted for splits only,
so dividends never change stored prices and would only spend the 5 requests/minute budget."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeGuard

from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon import PolygonApi

PAGE_LIMIT = 1000  # Polygon's maximum for reference endpoints
MAX_PAGES = 50  # a ticker has a handful of splits; more pages means a looping cursor


@dataclass(frozen=True)
class SplitEvent:
    """`split_from` old shares became `split_to` new ones on `execution_date` (4:1 = 1 -> 4)."""

    ticker: str
    execution_date: date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        """Prices before the split are divided by this in adjusted data; volumes multiplied."""
        return self.split_to / self.split_from


class PolygonReferenceClient(PolygonApi):
    """Polygon reference data: stock splits."""

    def __enter__(self) -> PolygonReferenceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def fetch_splits(
        self, ticker: str, stats: RequestStats, *, since: date | None = None
    ) -> list[SplitEvent]:
        """Every split of `ticker` (executed on or after `since` when given), oldest first,
        every page followed."""
        url = f"{self.base_url}/v3/reference/splits"
        params = {
            "ticker": ticker,
            "order": "asc",
            "sort": "execution_date",
            "limit": str(PAGE_LIMIT),
        }
        if since is not None:
            params["execution_date.gte"] = since.isoformat()
        found: dict[date, SplitEvent] = {}
        label = f"splits {ticker}"
        prefix = "/v3/reference/splits"
        for payload in self._pages(
            url, params, stats, label=label, max_pages=MAX_PAGES, path_prefix=prefix
        ):
            for event in self._results(payload, ticker, stats):
                found[event.execution_date] = event
        return [found[day] for day in sorted(found)]

    def _results(self, payload: Any, ticker: str, stats: RequestStats) -> list[SplitEvent]:
        if not isinstance(payload, dict) or payload.get("status") not in ("OK", "DELAYED"):
            raise self._malformed("response is not an OK splits payload", stats)
        results = payload.get("results")
        if results is None:
            return []
        if not isinstance(results, list):
            raise self._malformed("`results` is not a list", stats)
        events = []
        for item in results:
            event = _parse_split(item)
            if event is None:
                raise self._malformed(f"split with missing or invalid fields: {item!r:.160}", stats)
            if event.ticker != ticker.upper():
                raise self._malformed(f"split of {event.ticker} returned for {ticker}", stats)
            events.append(event)
        return events


def _positive(value: Any) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _parse_split(item: Any) -> SplitEvent | None:
    if not isinstance(item, dict):
        return None
    ticker, raw_date = item.get("ticker"), item.get("execution_date")
    split_from, split_to = item.get("split_from"), item.get("split_to")
    if not isinstance(ticker, str) or not ticker or not isinstance(raw_date, str):
        return None
    if not _positive(split_from) or not _positive(split_to):
        return None
    try:
        execution_date = date.fromisoformat(raw_date)
    except ValueError:
        return None
    return SplitEvent(ticker.upper(), execution_date, float(split_from), float(split_to))

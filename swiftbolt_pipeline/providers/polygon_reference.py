"""Polygon reference data of one ticker: stock splits (`GET /v3/reference/splits`) and cash
dividends (`GET /v3/reference/dividends`).

Every request (page, retry) goes through `ResilientClient`, so it takes a token from the same
shared PostgreSQL bucket as the aggregates and trips the same circuit breaker. The key travels
in the Authorization header, never in a URL; `next_url` is followed on the configured host.
Dividends never change stored prices (`adjusted=true` aggregates are adjusted for splits only);
they are kept for chart apps."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeGuard, TypeVar

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


@dataclass(frozen=True)
class DividendEvent:
    """A cash dividend; Polygon may omit every field but the ex-date, amount and type."""

    ticker: str
    ex_date: date
    cash_amount: float
    type: str  # CD regular, SC special, LT/ST long/short-term capital gain
    record_date: date | None
    pay_date: date | None
    currency: str | None
    frequency: int | None  # payments a year: 0 one-time, 1, 2, 4, 12, ...


E = TypeVar("E", SplitEvent, DividendEvent)


class PolygonReferenceClient(PolygonApi):
    """Polygon reference data: stock splits and cash dividends."""

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
            for event in self._results(payload, ticker, stats, _parse_split, "split"):
                found[event.execution_date] = event
        return [found[day] for day in sorted(found)]

    def fetch_dividends(self, ticker: str, stats: RequestStats) -> list[DividendEvent]:
        """Every cash dividend of `ticker`, by ex-date, every page followed (a few a year: one
        page). One per (ex-date, type): a repeated one keeps the last seen."""
        params = {
            "ticker": ticker,
            "order": "asc",
            "sort": "ex_dividend_date",
            "limit": str(PAGE_LIMIT),
        }
        prefix = "/v3/reference/dividends"
        found: dict[tuple[date, str], DividendEvent] = {}
        for payload in self._pages(
            f"{self.base_url}{prefix}",
            params,
            stats,
            label=f"dividends {ticker}",
            max_pages=MAX_PAGES,
            path_prefix=prefix,
        ):
            for event in self._results(payload, ticker, stats, _parse_dividend, "dividend"):
                found[(event.ex_date, event.type)] = event
        return [found[key] for key in sorted(found)]

    def _results(
        self,
        payload: Any,
        ticker: str,
        stats: RequestStats,
        parse: Callable[[Any], E | None],
        kind: str,
    ) -> list[E]:
        if not isinstance(payload, dict) or payload.get("status") not in ("OK", "DELAYED"):
            raise self._malformed(f"response is not an OK {kind}s payload", stats)
        results = payload.get("results")
        if results is None:
            return []
        if not isinstance(results, list):
            raise self._malformed("`results` is not a list", stats)
        events = []
        for item in results:
            event = parse(item)
            if event is None:
                raise self._malformed(
                    f"{kind} with missing or invalid fields: {item!r:.160}", stats
                )
            if event.ticker != ticker.upper():
                raise self._malformed(f"{kind} of {event.ticker} returned for {ticker}", stats)
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


def _optional_date(item: dict[str, Any], name: str) -> date | None:
    """The field's date; None when absent; ValueError when present but not a date."""
    raw = item.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(name)
    return date.fromisoformat(raw)


def _parse_dividend(item: Any) -> DividendEvent | None:
    if not isinstance(item, dict):
        return None
    ticker, kind, cash = item.get("ticker"), item.get("dividend_type"), item.get("cash_amount")
    currency, frequency = item.get("currency"), item.get("frequency")
    if not isinstance(ticker, str) or not ticker or not isinstance(kind, str) or not kind:
        return None
    if not _positive(cash) and not (type(cash) in (int, float) and cash == 0):
        return None
    if currency is not None and not isinstance(currency, str):
        return None
    if frequency is not None and (
        not isinstance(frequency, int) or isinstance(frequency, bool) or frequency < 0
    ):
        return None
    try:
        ex_date = _optional_date(item, "ex_dividend_date")
        record_date = _optional_date(item, "record_date")
        pay_date = _optional_date(item, "pay_date")
    except ValueError:
        return None
    if ex_date is None:
        return None
    return DividendEvent(
        ticker.upper(), ex_date, float(cash), kind, record_date, pay_date, currency, frequency
    )

"""Polygon aggregates: 15-minute (or, opted in, 5-minute) bars for one ticker over a range of
days, page by page.

`limit` counts base minute aggregates (max 50000), so the caller plans ranges of about 50
sessions; a server may still paginate at any size, and `next_url` carries a cursor but not the
key, which travels in the Authorization header so it never appears in a URL."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Unpack
from urllib.parse import parse_qsl, urlencode, urlsplit

import polars as pl

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ, is_session, session
from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.daily import at_session_open
from swiftbolt_pipeline.core.errors import MALFORMED_RESPONSE, ProviderError
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Provider
from swiftbolt_pipeline.core.ratemath import page_jitter
from swiftbolt_pipeline.providers.http import (
    ClientOptions,
    ProviderClient,
    RequestStats,
    TokenLimiter,
)

log = logging.getLogger(__name__)

MAX_LIMIT = 50_000
_NUMERIC_FIELDS = ("t", "o", "h", "l", "c", "v")
# The page cap of one aggregates fetch. The finest page that still makes progress holds a single
# 15-minute bar, and a calendar day has at most 96 of them (crypto trades around the clock), so
# a range of D days can never legitimately need more than 96 * D pages plus a final empty one.
# Beyond that the cursor is going round without repeating itself exactly.
_MAX_BARS_PER_DAY = 96
_MINUTE_MS = 60_000


class PolygonApi(ProviderClient):
    """What every Polygon endpoint client shares: the key as a Bearer header, `next_url`
    pagination kept on the configured base URL, and payload errors as MALFORMED_RESPONSE."""

    provider = Provider.POLYGON

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

    def _pages(
        self,
        url: str,
        params: dict[str, str],
        stats: RequestStats,
        *,
        label: str,
        max_pages: int,
        path_prefix: str = "/",
    ) -> Iterator[Any]:
        """Each page's payload of a paginated GET, the next one requested only once the caller
        has handled (validated) this one. A cursor seen twice, or more than `max_pages` pages,
        is MALFORMED_RESPONSE: paging would never end."""
        seen: set[str] = set()
        next_url: str | None = url
        query: dict[str, str] | None = params
        page = 0
        while next_url:
            page += 1
            if page > max_pages:
                raise self._malformed(f"more than {max_pages} pages for {label}", stats)
            log.info("polygon %s page %d", label, page)
            payload = self._client.get_json(next_url, stats, params=query)
            yield payload
            next_url, query = self._next_page(payload, stats, path_prefix), None
            if next_url is None:
                return
            if next_url in seen:
                raise self._malformed("next_url repeats: paging would never end", stats)
            seen.add(next_url)
            self.clock.sleep(page_jitter(self.rng))

    def _next_page(self, payload: Any, stats: RequestStats, path_prefix: str = "/") -> str | None:
        """The next page's URL: the cursor's path and query on the configured base URL.

        Polygon names its own public host in `next_url` (since its rebrand, `api.massive.com`,
        whatever host was asked), and the client may be configured for another one (a proxy, an
        emulator). Following the cursor on the configured base keeps the bearer token on that
        host, and a rebrand never breaks pagination."""
        next_url = payload.get("next_url") if isinstance(payload, dict) else None
        if not next_url:
            return None
        if not isinstance(next_url, str):
            raise self._malformed("next_url is not a string", stats)
        base, target = urlsplit(self.base_url), urlsplit(next_url)
        path = target.path
        if base.path and not path.startswith(f"{base.path}/"):
            path = base.path + path
        # Another endpoint or ticker is not this fetch's next page (tickers compare as Polygon
        # echoes them: upper case).
        if not path.casefold().startswith((base.path + path_prefix).casefold()):
            raise self._malformed(f"next_url leaves {path_prefix}: {target.path!r:.120}", stats)
        # The key travels in the header only: never copy one from a cursor into a URL.
        query = urlencode(
            [(k, v) for k, v in parse_qsl(target.query, keep_blank_values=True) if k != "apiKey"]
        )
        return f"{base.scheme}://{base.netloc}{path}" + (f"?{query}" if query else "")

    def _malformed(self, message: str, stats: RequestStats) -> ProviderError:
        return ProviderError(
            MALFORMED_RESPONSE, message, provider=self.provider, requests=stats.requests
        )


class PolygonClient(PolygonApi):
    """Polygon aggregates: 15- or 5-minute bars of one ticker."""

    max_symbols = 1

    def history_pages(
        self,
        tickers: Sequence[str],
        first: date,
        last: date,
        stats: RequestStats,
        *,
        bar_minutes: int = 15,
    ) -> Iterator[Mapping[str, pl.DataFrame]]:
        """`HistoryProvider`: one ticker's pages as they arrive."""
        (ticker,) = tickers
        for page in self.iter_m15_pages(ticker, first, last, stats, bar_minutes=bar_minutes):
            yield {ticker: page}

    def fetch_m15(self, ticker: str, first: date, last: date, stats: RequestStats) -> pl.DataFrame:
        """All 15-minute bars of `ticker` from `first` to `last` (exchange days, inclusive)."""
        pages = list(self.iter_m15_pages(ticker, first, last, stats))
        return pl.concat(pages) if pages else pl.DataFrame(schema=BAR_SCHEMA)

    def iter_m15_pages(
        self,
        ticker: str,
        first: date,
        last: date,
        stats: RequestStats,
        *,
        after: datetime | None = None,
        bar_minutes: int = 15,
    ) -> Iterator[pl.DataFrame]:
        """The 15-minute bars of `ticker` from `first` to `last` (exchange days, inclusive), one
        frame (BAR_SCHEMA, possibly empty) per page as it arrives, so each can be committed
        before the next is requested.

        `after` (a stored bar's start) resumes just after it: Polygon takes a millisecond
        timestamp as `from` as well as a date, and `from` becomes the next 15-minute slot, as
        in Polygon's own `next_url`. Not `after` + 1 ms: a server that buckets the minutes from
        `from` on would serve a partial bar for the slot of `after` itself. An `after` at or
        past the end of `last` makes no request. `bar_minutes` 5 asks for 5-minute bars
        (`/range/5/minute/`): the same base minutes, so the same pages for the same range."""
        if first > last:
            raise ValueError(f"first day {first} is after last day {last}")
        start: str = first.isoformat()
        if after is not None:
            if after.tzinfo is None:
                raise ValueError("`after` must be timezone-aware")
            bar_ms = bar_minutes * _MINUTE_MS
            from_ms = (_epoch_ms(after) // bar_ms + 1) * bar_ms
            if from_ms >= _epoch_ms(_day_start(last + timedelta(days=1))):
                return
            if from_ms > _epoch_ms(_day_start(first)):
                start = str(from_ms)
        prefix = f"/v2/aggs/ticker/{ticker}/range/{bar_minutes}/minute/"
        url = f"{self.base_url}{prefix}{start}/{last.isoformat()}"
        params = {"adjusted": "true", "sort": "asc", "limit": str(MAX_LIMIT)}
        max_pages = ((last - first).days + 1) * _MAX_BARS_PER_DAY * 15 // bar_minutes + 1
        label = f"{ticker} {start}..{last}"
        for payload in self._pages(
            url, params, stats, label=label, max_pages=max_pages, path_prefix=prefix
        ):
            frame = aggregates_frame(self._results(payload, ticker, stats))
            # Whatever the server does with `from`, a stored bar is never served again.
            yield frame if after is None else frame.filter(pl.col("ts") > after)

    def daily_bars(
        self, tickers: Sequence[str], first: date, last: date, stats: RequestStats
    ) -> dict[str, pl.DataFrame]:
        """`DailyProvider`: Polygon's own daily aggregates (the whole day's eligible trades,
        extended hours and the closing auction included) of each ticker for exchange days
        `first`..`last`, `ts` moved from Polygon's 00:00 ET label to the session's open.
        `limit` counts base aggregates, which for a day range are days: any daily depth up to
        50,000 days is one request per ticker (pages only if a server forces them)."""
        if first > last:
            raise ValueError(f"first day {first} is after last day {last}")
        out: dict[str, pl.DataFrame] = {}
        for ticker in tickers:
            prefix = f"/v2/aggs/ticker/{ticker}/range/1/day/"
            url = f"{self.base_url}{prefix}{first.isoformat()}/{last.isoformat()}"
            params = {"adjusted": "true", "sort": "asc", "limit": str(MAX_LIMIT)}
            pages = [
                aggregates_frame(self._results(payload, ticker, stats))
                for payload in self._pages(
                    url,
                    params,
                    stats,
                    label=f"{ticker} daily {first}..{last}",
                    max_pages=(last - first).days + 2,
                    path_prefix=prefix,
                )
            ]
            out[ticker] = at_session_open(pl.concat(pages))
        return out

    def grouped_daily(self, day: date, stats: RequestStats) -> pl.DataFrame:
        """`GroupedDailyProvider`: every US stock's official daily bar of session `day` in ONE
        request (`/v2/aggs/grouped/.../{day}`), as BAR_SCHEMA plus `symbol`, `ts` at the
        session's open. Polygon labels these bars 16:00 ET (the range endpoint: 00:00 ET); any
        label inside `day` is accepted, a bar of another day is MALFORMED_RESPONSE. A day
        without trading answers `resultsCount` 0 and no `results`: an empty frame."""
        url = f"{self.base_url}/v2/aggs/grouped/locale/us/market/stocks/{day.isoformat()}"
        log.info("polygon grouped daily %s", day)
        payload = self._client.get_json(url, stats, params={"adjusted": "true"})
        rows = self._results(payload, None, stats)
        if not all(isinstance(bar.get("T"), str) and bar["T"] for bar in rows):
            raise self._malformed("grouped bar without a ticker `T`", stats)
        tickers = [bar["T"].upper() for bar in rows]
        if len(set(tickers)) != len(tickers):
            raise self._malformed(f"grouped daily of {day} lists a ticker twice", stats)
        frame = aggregates_frame(rows).with_columns(pl.Series("symbol", tickers, dtype=pl.String))
        exchange_day = pl.col("ts").dt.convert_time_zone(str(EXCHANGE_TZ)).dt.date()
        if frame.filter(exchange_day != day).height:
            raise self._malformed(f"grouped daily of {day} holds bars of another day", stats)
        frame = frame.select("symbol", *BAR_SCHEMA)
        if not is_session(day):  # no session, no d1 partition to hold a bar
            return frame.clear()
        return frame.with_columns(pl.lit(session(day).open).cast(BAR_SCHEMA["ts"]).alias("ts"))

    def _results(
        self, payload: Any, ticker: str | None, stats: RequestStats
    ) -> list[dict[str, Any]]:
        if not isinstance(payload, dict) or payload.get("status") not in ("OK", "DELAYED"):
            raise self._malformed("response is not an OK aggregates payload", stats)
        # Bars of another ticker stored under this one would be wrong data that looks right.
        served = payload.get("ticker")
        if (
            ticker is not None
            and served is not None
            and (not isinstance(served, str) or served.upper() != ticker.upper())
        ):
            raise self._malformed(f"aggregates of {served!r:.20} returned for {ticker}", stats)
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


def _day_start(day: date) -> datetime:
    """00:00 America/New_York on `day`: where Polygon's date bounds begin and end."""
    return datetime.combine(day, time(), EXCHANGE_TZ)


def _epoch_ms(instant: datetime) -> int:
    return round(instant.timestamp() * 1000)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def aggregates_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Polygon aggregate results (`t o h l c v vw n`) as bars (stocks and crypto alike)."""
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

"""Stock splits: Polygon's ``GET /v3/reference/splits`` and the split adjustment of aggregates.

The emulator knows no splits until one is added at runtime (``POST /_emulator/splits``), so
every existing bar source stays exactly as it was. A split of ``split_from`` -> ``split_to``
shares executing on ``execution_date`` means, for ``adjusted=true`` aggregates, that every bar
starting before that day (America/New_York midnight) has its prices divided by
``ratio = split_to / split_from`` and its volume multiplied by it (rounded to whole shares);
several splits of one ticker compound. ``adjusted=false`` serves the bars as stored.

``GET /v3/reference/splits`` (real Polygon format)::

    {"results": [{"execution_date": "2020-08-31", "id": "E36416cc...", "split_from": 1,
                  "split_to": 4, "ticker": "AAPL"}],
     "status": "OK", "request_id": "...", "next_url": "{base}/v3/reference/splits?cursor=..."}

Query: ``ticker``, ``execution_date`` and ``execution_date.gte/.gt/.lte/.lt`` (``YYYY-MM-DD``),
``reverse_split`` (``true``/``false``), ``order`` (``asc`` default, ``desc``), ``sort``
(``execution_date`` default, ``ticker``), ``limit`` (default 10, max 1000; the runtime setting
``page_size`` also caps a page). ``next_url`` carries an opaque cursor (the query plus an
offset) and never the API key. ``results`` is an empty list when nothing matches.
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from .data import Bars
from .polygon import BadRequest
from .reference import serve_page, within_dates
from .sessions import day_start_ms
from .state import RuntimeConfig


@dataclass(frozen=True)
class Split:
    ticker: str
    execution_date: date
    split_from: float
    split_to: float

    @property
    def ratio(self) -> float:
        return self.split_to / self.split_from

    @property
    def id(self) -> str:
        text = f"{self.ticker}:{self.execution_date.isoformat()}:{self.split_from}:{self.split_to}"
        return "E" + hashlib.sha256(text.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "execution_date": self.execution_date.isoformat(),
            "id": self.id,
            "split_from": _number(self.split_from),
            "split_to": _number(self.split_to),
            "ticker": self.ticker,
        }

    @staticmethod
    def parse(data: Any) -> Split:
        """A split from the admin API: ``{"ticker", "execution_date", "split_from",
        "split_to"}``; ``ValueError`` with a readable message otherwise."""
        if not isinstance(data, dict):
            raise ValueError("a split is a JSON object")
        ticker = data.get("ticker")
        if not isinstance(ticker, str) or not ticker.strip():
            raise ValueError("ticker must be a non-empty string")
        raw_date = data.get("execution_date")
        try:
            execution_date = date.fromisoformat(str(raw_date))
        except ValueError:
            raise ValueError("execution_date must be YYYY-MM-DD") from None
        parts = []
        for name in ("split_from", "split_to"):
            value = data.get(name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number")
            parts.append(float(value))
        if parts[0] == parts[1]:
            raise ValueError("split_from and split_to must differ")
        return Split(ticker.strip().upper(), execution_date, parts[0], parts[1])


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


class SplitBook:
    """The splits the emulator knows, per ticker (thread-safe: the server runs in a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._splits: dict[tuple[str, date], Split] = {}

    def add(self, split: Split) -> None:
        """Add or replace the split of that ticker on that day."""
        with self._lock:
            self._splits[(split.ticker, split.execution_date)] = split

    def remove(self, ticker: str | None = None) -> None:
        """Forget the splits of one ticker, or all of them."""
        with self._lock:
            if ticker is None:
                self._splits.clear()
            else:
                for key in [k for k in self._splits if k[0] == ticker.upper()]:
                    del self._splits[key]

    def all(self) -> list[Split]:
        with self._lock:
            return sorted(self._splits.values(), key=lambda s: (s.execution_date, s.ticker))

    def for_ticker(self, ticker: str) -> list[Split]:
        return [s for s in self.all() if s.ticker == ticker.upper()]

    def adjust(self, ticker: str, bars: Bars) -> Bars:
        """Split-adjusted copy of ``bars`` (prices / ratio, volume * ratio before each split)."""
        splits = self.for_ticker(ticker)
        if not splits or len(bars) == 0:
            return bars
        factor = np.ones(len(bars), dtype=np.float64)
        for split in splits:
            factor = np.where(
                bars.t < day_start_ms(split.execution_date), factor * split.ratio, factor
            )
        if np.all(factor == 1.0):
            return bars
        volume = np.maximum(1, np.round(bars.v * factor)).astype(np.int64)
        return Bars(
            bars.t,
            bars.o / factor,
            bars.h / factor,
            bars.l / factor,
            bars.c / factor,
            volume,
            bars.vw / factor,
            bars.n,
            bars.span,
        )


# ---------------------------------------------------------------- GET /v3/reference/splits


def _select(splits: list[Split], query: dict[str, str]) -> list[Split]:
    ticker = query.get("ticker")
    if ticker:
        splits = [s for s in splits if s.ticker == ticker.upper()]
    splits = within_dates(splits, query, "execution_date", lambda s: s.execution_date)
    reverse = query.get("reverse_split")
    if reverse is not None:
        if reverse.lower() not in ("true", "false"):
            raise BadRequest("reverse_split must be true or false")
        want = reverse.lower() == "true"
        splits = [s for s in splits if (s.split_from > s.split_to) == want]
    sort = query.get("sort", "execution_date")
    if sort not in ("execution_date", "ticker"):
        raise BadRequest("sort must be execution_date or ticker")
    order = query.get("order", "asc").lower()
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")

    def key(s: Split) -> tuple[Any, ...]:
        if sort == "ticker":
            return (s.ticker, s.execution_date)
        return (s.execution_date, s.ticker)

    return sorted(splits, key=key, reverse=order == "desc")


def serve(request: Request, book: SplitBook, config: RuntimeConfig) -> Response:
    return serve_page(
        request,
        config,
        "/v3/reference/splits",
        lambda query: _select(book.all(), query),
        next_host=None,
    )

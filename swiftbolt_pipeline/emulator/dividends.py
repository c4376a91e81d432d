"""Cash dividends: Polygon's ``GET /v3/reference/dividends``.

Real Polygon format, as recorded (AAPL, a page of 10 with ``next_url``)::

    {"results": [{"cash_amount": 0.24, "currency": "USD", "declaration_date": "2023-08-03",
                  "dividend_type": "CD", "ex_dividend_date": "2023-08-11", "frequency": 4,
                  "pay_date": "2023-08-17", "record_date": "2023-08-14", "ticker": "AAPL"}],
     "status": "OK", "request_id": "7759fc05...",
     "next_url": "https://api.polygon.io/v3/reference/dividends?cursor=YXA9..."}

Every field but ``ticker``, ``ex_dividend_date``, ``cash_amount`` and ``dividend_type`` may be
missing from a result (Polygon's own client ships a recorded page without ``currency``; funds
often have no ``declaration_date``): the emulator omits a field its source row leaves ``None``.
``results`` comes newest first unless asked otherwise, as in both recorded pages.

Query: ``ticker``, ``ex_dividend_date`` and ``ex_dividend_date.gte/.gt/.lte/.lt``
(``YYYY-MM-DD``), ``dividend_type``, ``frequency``, ``order`` (``desc`` default, ``asc``),
``sort`` (``ex_dividend_date`` default, ``pay_date``, ``cash_amount``, ``ticker``), ``limit``
(default 10, max 1000; the runtime setting ``page_size`` also caps a page). ``next_url`` carries
an opaque cursor and never the API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .polygon import BadRequest
from .reference import serve_page, within_dates
from .state import RuntimeConfig

_SORTS = ("ex_dividend_date", "pay_date", "cash_amount", "ticker")


@dataclass(frozen=True)
class Dividend:
    ticker: str
    ex_dividend_date: date
    cash_amount: float
    dividend_type: str
    frequency: int | None
    currency: str | None
    declaration_date: date | None
    record_date: date | None
    pay_date: date | None

    def to_json(self) -> dict[str, Any]:
        """Polygon's result object: keys in its (alphabetical) order, absent fields omitted."""
        fields: dict[str, Any] = {
            "cash_amount": self.cash_amount,
            "currency": self.currency,
            "declaration_date": self.declaration_date,
            "dividend_type": self.dividend_type,
            "ex_dividend_date": self.ex_dividend_date,
            "frequency": self.frequency,
            "pay_date": self.pay_date,
            "record_date": self.record_date,
            "ticker": self.ticker,
        }
        return {
            k: v.isoformat() if isinstance(v, date) else v
            for k, v in fields.items()
            if v is not None
        }


def _d(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _rows(
    ticker: str, rows: list[tuple[str, float, str | None, str | None, str | None, str | None]]
) -> list[Dividend]:
    """(ex, cash, record, pay, declared, currency) rows of a regular quarterly dividend."""
    return [
        Dividend(ticker, date.fromisoformat(ex), cash, "CD", 4, cur, _d(decl), _d(rec), _d(pay))
        for ex, cash, rec, pay, decl, cur in rows
    ]


# AAPL 2021-05 .. 2023-08: Polygon's recorded AAPL payload, verbatim.
# Every other row is GENERATED, not recorded: plausible quarterly dividends of these symbols
# during the emulator's bar window (2025-05 .. 2026-03), shaped like the recorded ones. Funds
# carry no declaration date, and one row omits `currency`, as recorded pages sometimes do.
DIVIDENDS: tuple[Dividend, ...] = (
    *_rows("AAPL", [
        ("2021-05-07", 0.22, "2021-05-10", "2021-05-13", "2021-04-28", "USD"),
        ("2021-08-06", 0.22, "2021-08-09", "2021-08-12", "2021-07-27", "USD"),
        ("2021-11-05", 0.22, "2021-11-08", "2021-11-11", "2021-10-28", "USD"),
        ("2022-02-04", 0.22, "2022-02-07", "2022-02-10", "2022-01-27", "USD"),
        ("2022-05-06", 0.23, "2022-05-09", "2022-05-12", "2022-04-28", "USD"),
        ("2022-08-05", 0.23, "2022-08-08", "2022-08-11", "2022-07-28", "USD"),
        ("2022-11-04", 0.23, "2022-11-07", "2022-11-10", "2022-10-27", "USD"),
        ("2023-02-10", 0.23, "2023-02-13", "2023-02-16", "2023-02-01", "USD"),
        ("2023-05-12", 0.24, "2023-05-15", "2023-05-18", "2023-05-04", "USD"),
        ("2023-08-11", 0.24, "2023-08-14", "2023-08-17", "2023-08-03", "USD"),
        ("2025-05-12", 0.26, "2025-05-12", "2025-05-15", "2025-05-01", "USD"),
        ("2025-08-11", 0.26, "2025-08-11", "2025-08-14", "2025-07-31", "USD"),
        ("2025-11-10", 0.26, "2025-11-10", "2025-11-13", "2025-10-30", "USD"),
        ("2026-02-09", 0.26, "2026-02-09", "2026-02-12", "2026-01-29", "USD"),
    ]),
    *_rows("MSFT", [
        ("2025-05-15", 0.83, "2025-05-15", "2025-06-12", "2025-03-11", "USD"),
        ("2025-08-21", 0.83, "2025-08-21", "2025-09-11", "2025-06-10", "USD"),
        ("2025-11-20", 0.91, "2025-11-20", "2025-12-11", "2025-09-15", "USD"),
        ("2026-02-19", 0.91, "2026-02-19", "2026-03-12", "2025-12-02", "USD"),
    ]),
    *_rows("NVDA", [
        ("2025-06-11", 0.01, "2025-06-11", "2025-07-03", "2025-05-28", "USD"),
        ("2025-09-11", 0.01, "2025-09-11", "2025-10-02", "2025-08-27", "USD"),
        ("2025-12-04", 0.01, "2025-12-04", "2025-12-26", "2025-11-19", "USD"),
        ("2026-03-11", 0.01, "2026-03-11", "2026-04-01", "2026-02-25", None),
    ]),
    *_rows("QQQ", [
        ("2025-06-23", 0.6947, "2025-06-23", "2025-07-31", None, "USD"),
        ("2025-09-22", 0.6061, "2025-09-22", "2025-10-31", None, "USD"),
        ("2025-12-22", 0.7879, "2025-12-22", "2026-01-30", None, "USD"),
    ]),
    *_rows("SPY", [
        ("2025-06-20", 1.7611, "2025-06-20", "2025-07-31", None, "USD"),
        ("2025-09-19", 1.8317, "2025-09-19", "2025-10-31", None, "USD"),
        ("2025-12-19", 1.9937, "2025-12-19", "2026-01-30", None, "USD"),
    ]),
)  # fmt: skip


def _select(query: dict[str, str]) -> list[Dividend]:
    found = list(DIVIDENDS)
    ticker = query.get("ticker")
    if ticker:
        found = [d for d in found if d.ticker == ticker.upper()]
    found = within_dates(found, query, "ex_dividend_date", lambda d: d.ex_dividend_date)
    if (kind := query.get("dividend_type")) is not None:
        found = [d for d in found if d.dividend_type == kind]
    if (frequency := query.get("frequency")) is not None:
        if not frequency.isdigit():
            raise BadRequest("frequency must be an integer")
        found = [d for d in found if d.frequency == int(frequency)]
    sort = query.get("sort", "ex_dividend_date")
    if sort not in _SORTS:
        raise BadRequest(f"sort must be one of {', '.join(_SORTS)}")
    order = query.get("order", "desc").lower()
    if order not in ("asc", "desc"):
        raise BadRequest("order must be asc or desc")

    def key(d: Dividend) -> tuple[Any, ...]:
        value = getattr(d, sort)
        return (value is not None, value or 0, d.ex_dividend_date, d.ticker)

    return sorted(found, key=key, reverse=order == "desc")


def serve(request: Request, config: RuntimeConfig) -> Response:
    return serve_page(
        request,
        config,
        "/v3/reference/dividends",
        _select,
        next_host=config.next_url_base,
    )

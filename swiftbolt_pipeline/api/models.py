"""Request and response bodies of the HTTP API; field names are the contract."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter
from typing_extensions import TypedDict

from swiftbolt_pipeline.core.models import (
    CRYPTO_BASE_MAX,
    CRYPTO_QUOTES,
    Timeframe,
    normalize_ticker,
)
from swiftbolt_pipeline.storage.watchlist import MAX_WINDOW_DAYS


def _either_case(word: str) -> str:
    return "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in word)


# The watchlist's ticker rule (symbols.ticker CHECK), case-insensitive on input: a stock ticker
# or a crypto pair (`core.models.CRYPTO_PATTERN`: a base of 1 to 10 letters or digits, then a
# quote currency).
_CRYPTO_ANY_CASE = (
    rf"[Xx]:[A-Za-z0-9]{{1,{CRYPTO_BASE_MAX}}}"
    f"({'|'.join(_either_case(q) for q in CRYPTO_QUOTES)})"
)
TICKER_PATTERN = rf"^([A-Za-z][A-Za-z0-9]{{0,5}}([.-][A-Za-z0-9]{{1,2}})?|{_CRYPTO_ANY_CASE})$"

Ticker = Annotated[
    str,
    Field(
        pattern=TICKER_PATTERN,
        description="Ticker symbol, e.g. AAPL, BRK.B or the crypto pair X:BTCUSD",
    ),
    AfterValidator(normalize_ticker),
]
WindowDays = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_WINDOW_DAYS,
        description="Calendar days back from today (default: the symbol's, else 730).",
    ),
]


def _json_integer(value: object) -> object:
    """JSON Schema's `integer`: 30 and 30.0 are, `true` and `"30"` are not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be an integer")
    return value


class ErrorDetail(BaseModel):
    code: str = Field(description="SYMBOL_NOT_FOUND, INVALID_TIMEFRAME, INVALID_RANGE, ...")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class BackfillProgress(BaseModel):
    total_slices: int
    completed_slices: int
    running_slices: int
    queued_slices: int
    progress_percent: float
    bars_written: int


class GapOut(BaseModel):
    start: date
    end: date
    sessions: int


class CoverageOut(BaseModel):
    """The `swiftbolt coverage --json` object; a slice is one symbol x session partition."""

    symbol: str
    timeframe: Timeframe
    window_days: int
    status: Literal["gaps_detected", "backfill_running", "coverage_complete"]
    backfill_progress: BackfillProgress
    gaps: list[GapOut]


class EnsureCoverageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: Ticker
    timeframe: Timeframe = Timeframe.H1
    window_days: Annotated[WindowDays, BeforeValidator(_json_integer)] | None = None


class BarOut(BaseModel):
    ts: datetime = Field(description="Bar start, ISO-8601 UTC")
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float | None
    trade_count: int | None
    provider: str
    is_intraday: bool


class BarsOut(BaseModel):
    symbol: str
    timeframe: Timeframe
    bars: list[BarOut]


class _BarJson(TypedDict):
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float | None
    trade_count: int | None
    provider: str
    is_intraday: bool


class _BarsJson(TypedDict):
    symbol: str
    timeframe: Timeframe
    bars: list[_BarJson]


BAR_FIELDS = tuple(_BarJson.__annotations__)
# `BarsOut` serialized from plain rows in pydantic-core, without a model object per bar: the
# same JSON (tests compare them), several times faster for a year of bars.
BARS_JSON: TypeAdapter[Any] = TypeAdapter(_BarsJson)


class TokenStatusOut(BaseModel):
    provider: str
    available_tokens: float
    capacity: int
    refill_rate: float
    seconds_until_full: float


class SplitOut(BaseModel):
    execution_date: date
    split_from: float = Field(description="Shares before: 1 -> 4 is split_from 1, split_to 4")
    split_to: float


class DividendOut(BaseModel):
    ex_date: date
    record_date: date | None
    pay_date: date | None
    cash_amount: float = Field(description="Per share, in `currency`")
    currency: str | None
    frequency: int | None = Field(description="Payments a year (0: one-time)")
    type: str = Field(description="CD regular, SC special, LT/ST capital gains")


class CorporateActionsOut(BaseModel):
    symbol: str
    splits: list[SplitOut] = Field(description="By execution date")
    dividends: list[DividendOut] = Field(description="By ex-date")


class RunOut(BaseModel):
    run_id: str
    status: str
    trigger: str | None = Field(description="What launched it: a sensor, schedule or the CLI")
    symbols: str | None = Field(description="The run's symbol range, first..last")
    days: str | None = Field(description="The run's session range, first..last")
    updated_at: datetime | None


class RunsOut(BaseModel):
    queued: int
    running: int
    recent: list[RunOut] = Field(description="The newest runs, in flight or finished")


class BreakerOut(BaseModel):
    provider: str
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_at: datetime | None


class ParkedOut(BaseModel):
    symbol: str
    reason: str
    parked_at: datetime


class StatusOut(BaseModel):
    runs: RunsOut
    token_buckets: list[TokenStatusOut]
    breakers: list[BreakerOut]
    parked_symbols: list[ParkedOut] = Field(
        description="Symbols parked as dead (not fetched); `watch add` or ensure-coverage resumes"
    )

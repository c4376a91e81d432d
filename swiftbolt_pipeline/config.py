"""Configuration from the environment (the variables the README lists), read once at the edge:
the CLI, the API and the Dagster definitions build a `Settings` and pass it on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.daily import DEFAULT_DAILY_YEARS, MAX_DAILY_YEARS, years_back
from swiftbolt_pipeline.core.models import InvalidInput, Provider
from swiftbolt_pipeline.providers.registry import HISTORY_PROVIDERS, PROVIDERS

DEFAULT_POLYGON_BASE_URL = PROVIDERS[Provider.POLYGON].base_url
DEFAULT_TRADIER_BASE_URL = PROVIDERS[Provider.TRADIER].base_url
DEFAULT_ALPACA_BASE_URL = PROVIDERS[Provider.ALPACA].base_url
# Sent to the built-in emulator when no real key is configured.
EMULATOR_API_KEY = "emulator"


def _value(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def parse_now(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("INVALID_CONFIG", f"SWIFTBOLT_NOW={raw!r} is not ISO-8601") from None
    if value.tzinfo is None:
        raise InvalidInput("INVALID_CONFIG", "SWIFTBOLT_NOW needs a UTC offset, e.g. +00:00")
    return value.astimezone(UTC)


def parse_day(raw: str, what: str) -> date:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise InvalidInput("INVALID_RANGE", f"{what} {raw!r} is not a date (YYYY-MM-DD)") from None


def parse_providers(raw: str, *, single: str | None = None) -> tuple[Provider, ...]:
    """`polygon,alpaca` -> primary first, then fallbacks; unknown names are refused. With
    `single` (where the value comes from, for the message), exactly one provider."""
    names = tuple(dict.fromkeys(p.strip().lower() for p in raw.split(",") if p.strip()))
    unknown = [n for n in names if n not in HISTORY_PROVIDERS]
    if unknown or not names:
        raise InvalidInput(
            "INVALID_PROVIDER",
            f"unknown history provider(s) {', '.join(unknown) or raw!r}; "
            f"choose from {', '.join(HISTORY_PROVIDERS)}",
        )
    if single and len(names) != 1:
        raise InvalidInput("INVALID_PROVIDER", f"{single} takes one provider, not {raw!r}")
    return tuple(Provider(n) for n in names)


def _positive_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = _value(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidInput("INVALID_CONFIG", f"{name}={raw!r} must be a positive number")
    return value


IN_PROCESS = "in_process"
CELERY = "celery"


def _executor_settings(environ: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """SWIFTBOLT_EXECUTOR (`in_process`, the default, or `celery`) and the Celery variables.
    The broker and backend URLs may hold passwords: no message repeats them."""
    executor = (_value(environ, "SWIFTBOLT_EXECUTOR") or IN_PROCESS).lower().replace("-", "_")
    if executor not in (IN_PROCESS, CELERY):
        raise InvalidInput("INVALID_CONFIG", f"SWIFTBOLT_EXECUTOR must be {IN_PROCESS} or {CELERY}")
    broker = _value(environ, "SWIFTBOLT_CELERY_BROKER")
    backend = _value(environ, "SWIFTBOLT_CELERY_BACKEND")
    if executor == CELERY:
        missing = [
            name
            for name, value in (
                ("SWIFTBOLT_CELERY_BROKER", broker),
                ("SWIFTBOLT_CELERY_BACKEND", backend),
                # Every host must reach the same PostgreSQL: the embedded one is this machine's.
                ("DATABASE_URL", _value(environ, "DATABASE_URL")),
            )
            if value is None
        ]
        if missing:
            raise InvalidInput(
                "INVALID_CONFIG", f"SWIFTBOLT_EXECUTOR=celery needs {' and '.join(missing)}"
            )
    # Steps hand their outputs to each other through Redis (the result backend).
    if backend is not None and not backend.startswith(("redis://", "rediss://")):
        raise InvalidInput(
            "INVALID_CONFIG", "SWIFTBOLT_CELERY_BACKEND must be a redis:// or rediss:// URL"
        )
    return executor, broker, backend


def parse_daily_years(raw: str | None) -> int:
    """SWIFTBOLT_DAILY_YEARS: how many years of official daily bars to keep, 1..20."""
    if raw is None:
        return DEFAULT_DAILY_YEARS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAILY_YEARS:
        raise InvalidInput(
            "INVALID_CONFIG",
            f"SWIFTBOLT_DAILY_YEARS={raw!r} must be a whole number of years from 1 to "
            f"{MAX_DAILY_YEARS}",
        )
    return int(raw)


def parse_switch(raw: str | None, name: str) -> bool:
    """An on/off variable: 1/true/yes/on or 0/false/no/off (unset: off); anything else is
    refused rather than read as off."""
    value = (raw or "0").lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidInput("INVALID_CONFIG", f"{name}={raw!r} must be 1 or 0")


def history_window_start(today: date, override: date | None) -> date:
    """The first session kept: SWIFTBOLT_HISTORY_START, else two years before today."""
    if override:
        return override
    try:
        return today.replace(year=today.year - 2)
    except ValueError:  # 29 February
        return today.replace(year=today.year - 2, day=28)


class PipelineClock(Protocol):
    """What the services read from the configuration: the clock and the history window.
    `Settings` provides it at the edge (CLI, API), the `PipelineSettings` resource in Dagster."""

    @property
    def today(self) -> date: ...

    @property
    def history_start(self) -> date: ...

    @property
    def daily_start(self) -> date: ...

    @property
    def intraday_configured(self) -> bool: ...

    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str | None
    fixed_now: datetime | None
    history_start_override: date | None
    polygon_api_key: str | None
    polygon_base_url: str
    tradier_token: str | None
    tradier_base_url: str
    breaker_cooldown_s: float
    alpaca_base_url: str
    alpaca_key_id: str | None
    alpaca_secret_key: str | None
    history_providers: tuple[Provider, ...]
    extended_hours: bool
    alert_webhook: str | None = None
    # Where a run's steps execute (services/executor.py): `in_process` on this machine, or
    # `celery` on workers on any number of hosts, through the broker and result backend.
    executor: str = IN_PROCESS
    # URLs that may hold passwords: kept out of the dataclass's repr.
    celery_broker: str | None = field(default=None, repr=False)
    celery_backend: str | None = field(default=None, repr=False)
    daily_years: int = DEFAULT_DAILY_YEARS
    # SWIFTBOLT_M5=1: every watched stock gets 5-minute bars (m5) beside m15, not only the
    # symbols opted in one by one (`watch add SYM --m5`).
    m5_all: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """From `environ` (default: this process's environment)."""
        env = os.environ if environ is None else environ

        def _env(name: str) -> str | None:  # stripped, None when unset or blank
            return _value(env, name)

        now_raw = _env("SWIFTBOLT_NOW")
        start_raw = _env("SWIFTBOLT_HISTORY_START")
        executor, broker, backend = _executor_settings(env)
        return cls(
            home=Path(_env("SWIFTBOLT_HOME") or ".swiftbolt").resolve(),
            database_url=_env("DATABASE_URL"),
            fixed_now=parse_now(now_raw) if now_raw else None,
            history_start_override=(
                parse_day(start_raw, "SWIFTBOLT_HISTORY_START") if start_raw else None
            ),
            polygon_api_key=_env("POLYGON_API_KEY"),
            polygon_base_url=(_env("POLYGON_BASE_URL") or DEFAULT_POLYGON_BASE_URL).rstrip("/"),
            tradier_token=_env("TRADIER_TOKEN"),
            tradier_base_url=(_env("TRADIER_BASE_URL") or DEFAULT_TRADIER_BASE_URL).rstrip("/"),
            breaker_cooldown_s=_positive_float(env, "SWIFTBOLT_BREAKER_COOLDOWN_S", 60.0),
            alpaca_base_url=(_env("ALPACA_BASE_URL") or DEFAULT_ALPACA_BASE_URL).rstrip("/"),
            alpaca_key_id=_env("ALPACA_KEY_ID"),
            alpaca_secret_key=_env("ALPACA_SECRET_KEY"),
            history_providers=parse_providers(_env("SWIFTBOLT_HISTORY_PROVIDERS") or "polygon"),
            extended_hours=(_env("SWIFTBOLT_EXTENDED_HOURS") or "").lower() in ("1", "true", "yes"),
            alert_webhook=_env("SWIFTBOLT_ALERT_WEBHOOK"),
            executor=executor,
            celery_broker=broker,
            celery_backend=backend,
            daily_years=parse_daily_years(_env("SWIFTBOLT_DAILY_YEARS")),
            m5_all=parse_switch(_env("SWIFTBOLT_M5"), "SWIFTBOLT_M5"),
        )

    def now(self) -> datetime:
        return self.fixed_now or datetime.now(UTC)

    def credentials(self, provider: Provider) -> list[str | None]:
        """The provider's credentials, in the registry's order of their variables."""
        return {
            Provider.POLYGON: [self.polygon_api_key],
            Provider.ALPACA: [self.alpaca_key_id, self.alpaca_secret_key],
            Provider.TRADIER: [self.tradier_token],
        }[provider]

    @property
    def intraday_configured(self) -> bool:
        """Is there a provider for today's session (Tradier)? Without one, today's session
        waits for the history provider once it is past."""
        return self.tradier_token is not None

    @property
    def today(self) -> date:
        """Today on the exchange's wall clock."""
        return calendar.exchange_date(self.now())

    @property
    def history_start(self) -> date:
        return history_window_start(self.today, self.history_start_override)

    @property
    def daily_start(self) -> date:
        """The first day of the official daily history (SWIFTBOLT_DAILY_YEARS before today),
        independent of the intraday window."""
        return years_back(self.today, self.daily_years)

    def check_daily_range(self, start: date, end: date) -> None:
        """`check_range` against the daily depth instead of the intraday window."""
        if end < start:
            raise InvalidInput("INVALID_RANGE", f"end {end} is before start {start}")
        if start < self.daily_start:
            raise InvalidInput(
                "INVALID_RANGE",
                f"start {start} is before the daily history, which begins {self.daily_start}"
                f" ({self.daily_years} years, SWIFTBOLT_DAILY_YEARS)",
            )
        if end > self.today:
            raise InvalidInput(
                "INVALID_RANGE", f"end {end} is in the future (today is {self.today})"
            )

    def check_range(self, start: date, end: date, *, today: date | None = None) -> None:
        """Refuse ranges that are reversed, before the history window or after today (the
        exchange's date, or `today` given: the UTC date for crypto pairs)."""
        today = today or self.today
        if end < start:
            raise InvalidInput("INVALID_RANGE", f"end {end} is before start {start}")
        if start < self.history_start:
            raise InvalidInput(
                "INVALID_RANGE",
                f"start {start} is before the history window, which begins {self.history_start}"
                " (SWIFTBOLT_HISTORY_START)",
            )
        if end > today:
            raise InvalidInput("INVALID_RANGE", f"end {end} is in the future (today is {today})")

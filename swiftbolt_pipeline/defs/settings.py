"""The configuration Dagster bodies read, as a resource built once with the definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
from pydantic import Field

from swiftbolt_pipeline.config import Settings, history_window_start, parse_day, parse_now
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.daily import DEFAULT_DAILY_YEARS, years_back


class PipelineSettings(dg.ConfigurableResource):
    """The clock, the history window and the history providers (no secrets: those stay with
    the provider resources). Shown in the UI, so a run's configuration is visible."""

    fixed_now: str | None = Field(
        default=None, description="SWIFTBOLT_NOW: the pinned wall clock (ISO-8601), if any."
    )
    history_start_override: str | None = Field(
        default=None, description="SWIFTBOLT_HISTORY_START (YYYY-MM-DD), if set."
    )
    history_providers: list[str] = Field(
        default=["polygon"],
        description="SWIFTBOLT_HISTORY_PROVIDERS: history providers, primary first.",
    )
    extended_hours: bool = Field(default=False, description="SWIFTBOLT_EXTENDED_HOURS.")
    intraday_configured: bool = Field(
        default=False, description="Is there a provider for today's session (TRADIER_TOKEN)?"
    )
    daily_years: int = Field(
        default=DEFAULT_DAILY_YEARS,
        description="SWIFTBOLT_DAILY_YEARS: years of official daily bars kept (1-20).",
    )
    m5_all: bool = Field(
        default=False,
        description="SWIFTBOLT_M5: every watched stock gets 5-minute bars, not only opted-in ones.",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineSettings:
        start = settings.history_start_override
        return cls(
            fixed_now=settings.fixed_now.isoformat() if settings.fixed_now else None,
            history_start_override=start.isoformat() if start else None,
            history_providers=list(settings.history_providers),
            extended_hours=settings.extended_hours,
            intraday_configured=settings.intraday_configured,
            daily_years=settings.daily_years,
            m5_all=settings.m5_all,
        )

    def pinned_now(self) -> datetime | None:
        return parse_now(self.fixed_now) if self.fixed_now else None

    def now(self) -> datetime:
        return self.pinned_now() or datetime.now(UTC)

    @property
    def today(self) -> date:
        """Today on the exchange's wall clock."""
        return calendar.exchange_date(self.now())

    @property
    def history_start(self) -> date:
        raw = self.history_start_override
        override = parse_day(raw, "SWIFTBOLT_HISTORY_START") if raw else None
        return history_window_start(self.today, override)

    @property
    def daily_start(self) -> date:
        """The first day of the official daily history (see `Settings.daily_start`)."""
        return years_back(self.today, self.daily_years)

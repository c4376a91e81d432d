"""Schedules: today's session every 15 minutes while the market is open (Tradier), and the
previous session finalized from Polygon the next morning, replacing the intraday rows."""

from datetime import timedelta

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.defs.jobs import BARS_JOB, range_tags
from swiftbolt_pipeline.defs.partitions import SYMBOLS

# The last refresh runs one bar after the close so the final 15-minute bar is complete.
CLOSE_GRACE = timedelta(minutes=15)


def _all_symbols(context: dg.ScheduleEvaluationContext) -> list[str]:
    assert SYMBOLS.name is not None
    return sorted(context.instance.get_dynamic_partitions(SYMBOLS.name))


@dg.schedule(
    name="today_intraday_schedule",
    job_name=BARS_JOB,
    cron_schedule="*/15 9-16 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's session for every watched symbol, every 15 minutes while NYSE is open.",
)
def today_intraday_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    settings = Settings.from_env()
    now = settings.fixed_now or context.scheduled_execution_time
    today = calendar.exchange_date(now)
    if not calendar.is_session(today):
        return dg.SkipReason(f"{today} is not a trading session")
    session = calendar.session(today)
    if not session.open + timedelta(minutes=15) <= now <= session.close + CLOSE_GRACE:
        return dg.SkipReason(f"outside the session {session.open:%H:%M}-{session.close:%H:%M} UTC")
    symbols = _all_symbols(context)
    if not symbols:
        return dg.SkipReason("the watchlist is empty")
    return dg.RunRequest(
        run_key=f"today:{now.isoformat()}",
        tags={**range_tags(symbols[0], symbols[-1], today, today), "swiftbolt/trigger": "today"},
    )


@dg.schedule(
    name="finalize_previous_session_schedule",
    job_name=BARS_JOB,
    cron_schedule="0 6 * * 1-6",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The previous session re-fetched from Polygon, replacing its intraday bars.",
)
def finalize_previous_session_schedule(
    context: dg.ScheduleEvaluationContext,
) -> dg.RunRequest | dg.SkipReason:
    settings = Settings.from_env()
    now = settings.fixed_now or context.scheduled_execution_time
    previous = calendar.previous_session(calendar.exchange_date(now))
    symbols = _all_symbols(context)
    if not symbols:
        return dg.SkipReason("the watchlist is empty")
    return dg.RunRequest(
        run_key=f"finalize:{previous.isoformat()}",
        tags={
            **range_tags(symbols[0], symbols[-1], previous, previous),
            "swiftbolt/trigger": "finalize",
        },
    )

"""Schedules: today's session every 15 minutes while the market is open (the intraday
provider, Tradier), and the previous session finalized from the history provider the next
morning, replacing the provisional rows. A finalize that fails is retried by the gap sensor,
which treats provisional rows of a past session as a gap once the finalize is overdue."""

from datetime import datetime, timedelta

import dagster as dg

from swiftbolt_pipeline.core import calendar, completeness
from swiftbolt_pipeline.core.planning import symbol_span
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import MISSING_ONLY_TAG, TRIGGER_TAG, range_tags
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.coverage import session_states

# The last refresh runs one bar after the close so the final 15-minute bar is complete.
CLOSE_GRACE = timedelta(minutes=15)


def closed_for_today(
    pipeline: PipelineSettings, now: datetime, *, first_bar: timedelta
) -> dg.SkipReason | None:
    """Why a refresh of today's session from Tradier cannot run `now` (no Tradier, no session
    today, before the first bar of `first_bar` is complete or past the close's grace), or
    None when it can."""
    today = calendar.exchange_date(now)
    if not pipeline.intraday_configured:
        return dg.SkipReason("no intraday provider configured (TRADIER_TOKEN)")
    if not calendar.is_session(today):
        return dg.SkipReason(f"{today} is not a trading session")
    session = calendar.session(today)
    if not session.open + first_bar <= now <= session.close + CLOSE_GRACE:
        return dg.SkipReason(f"outside the session {session.open:%H:%M}-{session.close:%H:%M} UTC")
    return None


def _all_symbols(context: dg.ScheduleEvaluationContext) -> list[str]:
    """The symbol partitions in Dagster's order (as added, not alphabetical): a run's range
    goes from one of them to a later one."""
    assert SYMBOLS.name is not None
    return list(context.instance.get_dynamic_partitions(SYMBOLS.name))


@dg.schedule(
    name="today_intraday_schedule",
    job_name=BARS_JOB,
    cron_schedule="*/15 9-16 * * 1-5",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's session for every watched symbol, every 15 minutes while NYSE is open.",
)
def today_intraday_schedule(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineSettings
) -> dg.RunRequest | dg.SkipReason:
    now = pipeline.pinned_now() or context.scheduled_execution_time
    today = calendar.exchange_date(now)
    if (closed := closed_for_today(pipeline, now, first_bar=timedelta(minutes=15))) is not None:
        return closed
    symbols = _all_symbols(context)
    if not symbols:
        return dg.SkipReason("the watchlist is empty")
    return dg.RunRequest(
        run_key=f"today:{now.isoformat()}",
        tags={**range_tags(symbols[0], symbols[-1], today, today), TRIGGER_TAG: "today"},
    )


@dg.schedule(
    name="finalize_previous_session_schedule",
    job_name=BARS_JOB,
    cron_schedule="0 6 * * 1-6",
    execution_timezone="America/New_York",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The previous session from the history provider for every watched symbol "
    "that lacks its final bars, replacing provisional ones.",
)
def finalize_previous_session_schedule(
    context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource, pipeline: PipelineSettings
) -> dg.RunRequest | dg.SkipReason:
    now = pipeline.pinned_now() or context.scheduled_execution_time
    previous = calendar.previous_session(calendar.exchange_date(now))
    with warehouse.connect() as conn:
        watched = watchlist.list_symbols(conn)
        states = session_states(conn, [s.id for s in watched], [previous])
    order = _all_symbols(context)
    symbols = [
        s.ticker
        for s in watched
        if s.ticker in order
        and not completeness.raw_complete(states[s.id][previous], final_required=True)
    ]
    if not symbols:
        return dg.SkipReason(f"every watched symbol has its final bars of {previous}")
    first, last = symbol_span(order, symbols)
    return dg.RunRequest(
        run_key=f"finalize:{previous.isoformat()}",
        tags={
            **range_tags(first, last, previous, previous),
            TRIGGER_TAG: "finalize",
            MISSING_ONLY_TAG: "true",
        },
    )

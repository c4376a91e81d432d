"""The chaos plan as data: which symbols play which role, and what happens when (no Dagster).

Every event sits at a scripted simulated time (UTC). Roles:

* ``normal``: trades every session.
* ``delisted``: trades until ``delisted_after``, no bars after (still known to the provider).
* ``mistyped``: unknown to the provider (``ZZ`` prefix: the emulator knows no such ticker).
* ``halted``: one full session without any bar.
* ``added``: put on the watchlist in the middle of the simulation.
* ``split``: a 1:2 split executes on a session inside the simulation.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from swiftbolt_pipeline.core import calendar

ET = ZoneInfo("America/New_York")
# A real-looking Polygon key (32 characters, like Polygon's): the emulator is told to accept
# exactly this one, so the pipeline sees "a real key" and must not wire any emulator in.
REAL_LOOKING_POLYGON_KEY = "Xq7vK2mPz9LrT4wN8bYc3HdF6gJs1AeU"
TRADIER_TOKEN = "soak-tradier-token"
PAGE_SIZE = 2000  # aggregated bars per Polygon page: a 30-60 day window takes 2 pages

# Event kinds (the runner maps each to an action).
OUTAGE_START = "polygon_outage_start"
OUTAGE_END = "polygon_outage_end"
DROP_TRADIER = "restart_without_tradier_token"
ADD_SYMBOL = "watch_add"
SPLIT = "split_announced"
PG_RESTART = "postgres_restart"
KILL_WORKER = "kill_run_worker"


@dataclass(frozen=True)
class SymbolSpec:
    ticker: str
    role: str
    window_days: int
    listed_from: date | None = None
    delisted_after: date | None = None
    halted: tuple[date, ...] = ()

    @property
    def dead_days(self) -> tuple[date, ...]:
        """Sessions (of the whole calendar) on which the provider has no bars for it: used
        for the audit's allowance, not by the pipeline."""
        return self.halted


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    detail: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        local = self.at.astimezone(ET)
        extra = " ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{local:%Y-%m-%d %H:%M} ET {self.kind} {extra}".strip()


@dataclass(frozen=True)
class SoakPlan:
    seed: int
    sessions: tuple[date, ...]
    symbols: tuple[SymbolSpec, ...]
    events: tuple[Event, ...]
    history_start: date
    intraday_every_min: int
    end: datetime
    # Runtime options of the emulator for the real payload shapes (item 8), if it has them.
    emulator_config: dict[str, object]

    def symbol(self, role: str) -> SymbolSpec:
        return next(s for s in self.symbols if s.role == role)

    @property
    def added_at(self) -> dict[str, datetime]:
        return {e.detail["ticker"]: e.at for e in self.events if e.kind == ADD_SYMBOL}

    @property
    def tradier_dropped_at(self) -> datetime | None:
        return next((e.at for e in self.events if e.kind == DROP_TRADIER), None)

    @property
    def split_day(self) -> date | None:
        found = next((e for e in self.events if e.kind == SPLIT), None)
        return date.fromisoformat(found.detail["execution_date"]) if found else None


def at_et(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), ET).astimezone(UTC)


def _tickers(rng: random.Random, n: int) -> list[str]:
    """Distinct 4-letter tickers (no ZZ prefix, none of the real-data tickers)."""
    letters = string.ascii_uppercase[:25]  # no Z: ZZ.. is the emulator's "unknown" prefix
    found: list[str] = []
    while len(found) < n:
        ticker = "".join(rng.choice(letters) for _ in range(4))
        if ticker not in found:
            found.append(ticker)
    return found


def build_plan(
    start: date,
    *,
    sessions: int = 20,
    symbols: int = 20,
    seed: int = 1,
    intraday_every_min: int = 15,
) -> SoakPlan:
    """The plan over `sessions` consecutive sessions from the first session on or after
    `start`. At least 3 sessions and 7 symbols (one per role plus two normal ones)."""
    if sessions < 3 or symbols < 7:
        raise ValueError("a soak needs at least 3 sessions and 7 symbols")
    if intraday_every_min % 15:
        raise ValueError("intraday ticks are a multiple of 15 minutes")
    rng = random.Random(seed)
    days = calendar.sessions_between(start, start + timedelta(days=sessions * 2 + 10))[:sessions]
    n = len(days)
    names = _tickers(rng, symbols)
    window = lambda: rng.randint(30, 45)  # noqa: E731
    halt_day, delist_day = days[n // 2], days[max(0, n // 3)]
    added_day, split_day = days[n // 2], days[max(1, (2 * n) // 3)]
    roles = [
        SymbolSpec(names[0], "delisted", window(), delisted_after=delist_day),
        SymbolSpec("ZZ" + names[1][:3], "mistyped", window()),
        SymbolSpec(names[2], "halted", window(), halted=(halt_day,)),
        SymbolSpec(names[3], "added", window()),
        SymbolSpec(names[4], "split", window()),
    ]
    roster = tuple(roles + [SymbolSpec(t, "normal", window()) for t in names[5:]])
    outage_day = days[1]  # its 06:00 finalizes the first session
    kill_day, pg_day = days[min(2, n - 1)], days[min(n - 1, max(2, n // 2 + 1))]
    events = [
        Event(at_et(outage_day, 5, 45), OUTAGE_START, {"route": "polygon", "status": "503"}),
        Event(at_et(outage_day, 7, 0), OUTAGE_END),
        Event(at_et(days[n // 2], 5, 30), DROP_TRADIER),
        Event(at_et(added_day, 10, 0), ADD_SYMBOL, {"ticker": names[3]}),
        Event(
            at_et(split_day, 5, 0),
            SPLIT,
            {"ticker": names[4], "execution_date": split_day.isoformat(), "ratio": "1:2"},
        ),
        Event(at_et(kill_day, 12, 0), KILL_WORKER),
        Event(at_et(pg_day, 11, 0), PG_RESTART),
    ]
    following = calendar.sessions_between(days[-1] + timedelta(days=1), days[-1] + timedelta(10))
    return SoakPlan(
        seed=seed,
        sessions=tuple(days),
        symbols=roster,
        events=tuple(sorted(events, key=lambda e: e.at)),
        history_start=days[0] - timedelta(days=50),
        intraday_every_min=intraday_every_min,
        # The morning after the last session: its 06:00 finalize, then sensors until 09:00.
        end=at_et(following[0], 9, 0),
        # Real payload shapes: pages whose next_url names Polygon's new host (a day without
        # trades answers Tradier's `{"series": "null"}` always, as the real API does).
        emulator_config={"page_size": PAGE_SIZE, "next_url_base": "https://api.massive.com"},
    )


def ticks(plan: SoakPlan) -> list[datetime]:
    """Simulated times the daemon is evaluated at: 06:00 ET every weekday-or-Saturday morning
    (the finalize schedule's cron), sensors at 05:45 and every 30 minutes 06:00-09:00, and every
    `intraday_every_min` during the session, the first complete bar through one bar after
    the close."""
    out: set[datetime] = set()
    day = plan.sessions[0] - timedelta(days=1)
    last = calendar.exchange_date(plan.end)
    while day <= last:
        for minute in (5 * 60 + 45, *range(6 * 60, 9 * 60 + 1, 30)):
            out.add(at_et(day, minute // 60, minute % 60))
        if calendar.is_session(day):
            session = calendar.session(day)
            t = session.open + timedelta(minutes=15)
            while t <= session.close + timedelta(minutes=15):
                out.add(t)
                t += timedelta(minutes=plan.intraday_every_min)
            out.add(session.close + timedelta(minutes=15))
        day += timedelta(days=1)
    return sorted(t for t in out if t <= plan.end)

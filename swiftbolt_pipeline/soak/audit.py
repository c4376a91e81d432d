"""The audit: the database against the emulator's truth, and the emulator's own counters.

It never reads the pipeline's counters (ledger, run metadata): bars come from `ohlc_bars_v2`,
requests and 429s from the emulator (`/_emulator/stats`, `/_emulator/requests`).

Request floor (Polygon), per symbol, from the plan and the truth:
* its first backfill: the window's sessions before the day it was added, as one coalesced
  range: max(ceil(base minutes / 50000), ceil(15-minute aggregates / page size), 1) requests
  (`limit` counts base minutes; the emulator also caps pages at `page_size` bars);
* one request per session it trades in the simulation (that session fetched once from the
  history provider: the 06:00 finalize, or the gap fill when no intraday provider is set);
* two requests per calendar day it is watched (the corporate-actions sensor's daily check of
  splits and dividends);
* for the split symbol, the stored range before the split once more (the re-fetch).
Dead symbol-days (a mistyped ticker every day, a delisted one after its last session, a halted
one on its halted day) have no floor; each may cost at most 3 requests (a fetch and the
corporate-action check's two), the allowance.
Pass: requests <= 1.2 x floor + allowance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
import polars as pl
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.emulator.data import BarStore, is_listed
from swiftbolt_pipeline.soak import truth
from swiftbolt_pipeline.soak.plan import PAGE_SIZE, SoakPlan, SymbolSpec
from swiftbolt_pipeline.storage import audit as audit_reads

MAX_LIMIT = 50_000  # base minute aggregates per Polygon request
PRICE_TOL = 1e-6
VWAP_TOL = 1e-3  # derived vwap from 4-decimal m15 vwaps
BUDGET_FACTOR = 1.2
DEAD_ALLOWANCE = 3
EXAMPLES = 4


@dataclass
class Cell:
    """One symbol x timeframe: session outcomes, with a few examples of each problem."""

    symbol: str
    role: str
    timeframe: str
    expected: int = 0
    ok: int = 0
    missing: int = 0
    wrong: int = 0
    provisional: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class AuditReport:
    cells: list[Cell]
    checks: list[Check]
    requests: dict[str, dict[str, int]]  # symbol -> {"spent", "floor", "allowance"}
    parked: list[tuple[str, str | None, str | None]]
    unconfigured_rows: list[str]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


@dataclass(frozen=True)
class EmulatorCounters:
    requests: dict[str, int]
    rejected_429: dict[str, int]
    by_ticker: dict[str, dict[str, int]]

    @staticmethod
    def read(url: str) -> EmulatorCounters:
        stats = httpx.get(f"{url}/_emulator/stats", timeout=10).json()
        by_ticker = httpx.get(f"{url}/_emulator/requests", timeout=10).json()
        return EmulatorCounters(stats["requests"], stats["rejected_429"], by_ticker)


def facts_of(plan: SoakPlan, spec: SymbolSpec) -> truth.Facts:
    split_day = plan.split_day if spec.role == "split" else None
    return truth.Facts(
        listed_from=spec.listed_from,
        delisted_after=spec.delisted_after,
        halted=frozenset(spec.halted),
        split_day=split_day,
        split_ratio=2.0 if split_day else 1.0,
    )


def past_sessions(plan: SoakPlan) -> list[date]:
    """Sessions that are over at the end of the simulation (its day's session is not)."""
    end_day = calendar.exchange_date(plan.end)
    return calendar.sessions_between(plan.history_start, end_day - timedelta(days=1))


def window_of(plan: SoakPlan, spec: SymbolSpec, today: date) -> list[date]:
    start = max(today - timedelta(days=spec.window_days), plan.history_start)
    return [d for d in past_sessions(plan) if start <= d < today]


def _mismatch(want: pl.DataFrame, got: pl.DataFrame) -> str | None:
    """Why `got` (stored, one session) differs from `want` (truth), or None."""
    if want.height != got.height:
        return f"{got.height} of {want.height} bars"
    joined = want.join(got, on="ts_ms", how="left", suffix="_db")
    if joined["open_db"].null_count():
        return "bars at the wrong times"
    for col in ("open", "high", "low", "close"):
        if ((joined[col] - joined[f"{col}_db"]).abs() > PRICE_TOL).any():
            return f"{col} differs"
    if (joined["volume"] != joined["volume_db"]).any():
        return "volume differs"
    if ((joined["vwap"] - joined["vwap_db"]).abs() > VWAP_TOL).fill_null(True).any():
        return "vwap differs"
    if (joined["trade_count"] != joined["trade_count_db"]).fill_null(True).any():
        return "trade_count differs"
    return None


def audit_bars(
    conn: psycopg.Connection, plan: SoakPlan, store: BarStore, end_day: date
) -> list[Cell]:
    cells: list[Cell] = []
    past = set(past_sessions(plan))
    for spec in plan.symbols:
        stored = audit_reads.stored_bars(conn, spec.ticker)
        expected = window_of(plan, spec, end_day)
        # Sessions of the audited timeframes only: d1 reaches years back (the daily depth).
        audited = stored.filter(pl.col("timeframe").is_in(truth.TIMEFRAMES))
        stored_days = {d for d in audited["day"].to_list() if d in past}
        days = sorted(set(expected) | stored_days)
        want = truth.session_truth(store, spec.ticker, days, facts_of(plan, spec))
        for tf in truth.TIMEFRAMES:
            cell = Cell(spec.ticker, spec.role, tf, expected=len(expected))
            have = stored.filter(pl.col("timeframe") == tf)
            for day in days:
                w = want[tf].filter(pl.col("day") == day)
                g = have.filter(pl.col("day") == day)
                if g.filter(pl.col("is_intraday")).height:
                    cell.provisional += 1
                    cell.note(f"{day} provisional ({g['provider'][0]})")
                    continue
                if w.height and not g.height:
                    cell.missing += 1
                    cell.note(f"{day} missing")
                    continue
                why = _mismatch(w, g)
                if why:
                    cell.wrong += 1
                    cell.note(f"{day} {why}")
                elif day in expected:
                    cell.ok += 1
            cells.append(cell)
    return cells


def unconfigured_rows(conn: psycopg.Connection, plan: SoakPlan) -> list[str]:
    """Rows from a provider without real credentials: Alpaca (never configured here) and
    Tradier for sessions from the moment its token was removed."""
    dropped = plan.tradier_dropped_at
    since = calendar.exchange_date(dropped) if dropped else date.max
    rows = audit_reads.unconfigured_provider_rows(conn, tradier_since=since)
    return [f"{t} {tf} {d} {p}: {n} row(s)" for t, tf, d, p, n in rows]


def _pages(store: BarStore, spec: SymbolSpec, days: list[date], facts: truth.Facts) -> int:
    if not any(facts.trades_on(spec.ticker, d) for d in days):
        return 0
    minutes = truth.base_minutes(store, spec.ticker, days, facts)
    aggs = truth.m15_aggregates(store, spec.ticker, days, facts)
    return max(1, math.ceil(minutes / MAX_LIMIT), math.ceil(aggs / PAGE_SIZE))


def _calendar_days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def request_floor(plan: SoakPlan, store: BarStore) -> dict[str, dict[str, int]]:
    """Per symbol: {"floor", "allowance"} (see the module docstring)."""
    first_tick = datetime.combine(plan.sessions[0] - timedelta(days=1), datetime.min.time(), UTC)
    end_day = calendar.exchange_date(plan.end)
    out: dict[str, dict[str, int]] = {}
    for spec in plan.symbols:
        facts = facts_of(plan, spec)
        added = plan.added_at.get(spec.ticker, first_tick)
        added_day = calendar.exchange_date(added)
        floor = _pages(store, spec, window_of(plan, spec, added_day), facts)
        sim_sessions = [d for d in plan.sessions if d >= added_day]
        floor += sum(1 for d in sim_sessions if facts.trades_on(spec.ticker, d))
        watched_days = list(_calendar_days(added_day, end_day))
        alive = [d for d in watched_days if _alive(spec, facts, d)]
        floor += 2 * len(alive)  # daily corporate-action checks: splits and dividends
        if plan.split_day and spec.role == "split":
            before = [d for d in window_of(plan, spec, plan.split_day)]
            floor += _pages(store, spec, before, facts)
        dead = len(watched_days) - len(alive) + sum(1 for d in spec.halted if d in sim_sessions)
        out[spec.ticker] = {"floor": floor, "allowance": DEAD_ALLOWANCE * dead}
    return out


def _alive(spec: SymbolSpec, facts: truth.Facts, day: date) -> bool:
    if not is_listed(spec.ticker):
        return False
    return facts.delisted_after is None or day <= facts.delisted_after


def run_audit(
    conn: psycopg.Connection, plan: SoakPlan, counters: EmulatorCounters, store: BarStore
) -> AuditReport:
    end_day = calendar.exchange_date(plan.end)
    cells = audit_bars(conn, plan, store, end_day)
    unconfigured = unconfigured_rows(conn, plan)
    parked = audit_reads.parked_symbols(conn)
    floors = request_floor(plan, store)
    spent_by = counters.by_ticker.get("polygon", {})
    requests = {t: {"spent": spent_by.get(t, 0), **f} for t, f in floors.items()}
    spent = counters.requests.get("polygon", 0)
    floor = sum(f["floor"] for f in floors.values())
    allowance = sum(f["allowance"] for f in floors.values())
    limit = BUDGET_FACTOR * floor + allowance
    over = [
        f"{t} {r['spent']}/{r['floor']}+{r['allowance']}"
        for t, r in requests.items()
        if r["spent"] > BUDGET_FACTOR * r["floor"] + r["allowance"]
    ]
    rejected = sum(counters.rejected_429.values())

    def total(attr: str) -> int:
        return sum(getattr(c, attr) for c in cells)

    def where(attr: str) -> str:
        bad = [c for c in cells if getattr(c, attr)]
        return "; ".join(f"{c.symbol}/{c.timeframe}: {', '.join(c.examples)}" for c in bad[:6])

    checks = [
        Check("wrong past sessions", total("wrong") == 0, f"{total('wrong')} {where('wrong')}"),
        Check(
            "missing past sessions", total("missing") == 0, f"{total('missing')} {where('missing')}"
        ),
        Check(
            "provisional rows in past sessions",
            total("provisional") == 0,
            f"{total('provisional')} {where('provisional')}",
        ),
        Check(
            "rows from an unconfigured provider",
            not unconfigured,
            f"{len(unconfigured)} group(s) {'; '.join(unconfigured[:6])}",
        ),
        Check(
            "polygon requests <= 1.2 x floor + 2 per dead symbol-day",
            spent <= limit,
            f"{spent} spent, floor {floor}, allowance {allowance}, limit {limit:.0f}; "
            f"over per symbol: {', '.join(over) or '-'}",
        ),
        Check("429 responses", rejected == 0, f"{rejected} ({counters.rejected_429})"),
    ]
    return AuditReport(cells, checks, requests, parked, unconfigured)


def format_report(report: AuditReport) -> str:
    lines = [
        f"{'symbol':<7} {'role':<9} {'tf':<4} {'expected':>8} {'ok':>4} {'missing':>7} "
        f"{'wrong':>5} {'provis.':>7}  {'polygon req (spent/floor+allow)':<31} examples"
    ]
    for c in report.cells:
        r = report.requests.get(c.symbol, {})
        req = f"{r.get('spent', 0)}/{r.get('floor', 0)}+{r.get('allowance', 0)}"
        lines.append(
            f"{c.symbol:<7} {c.role:<9} {c.timeframe:<4} {c.expected:>8} {c.ok:>4} "
            f"{c.missing:>7} {c.wrong:>5} {c.provisional:>7}  "
            f"{req if c.timeframe == 'm15' else '':<31} {'; '.join(c.examples)}"
        )
    lines.append("")
    lines.append("parked symbols: " + (
        ", ".join(f"{t} ({reason}, {at})" for t, reason, at in report.parked) or "none"
    ))  # fmt: skip
    lines.append("")
    for check in report.checks:
        lines.append(f"[{'PASS' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    lines.append(f"audit {'PASSED' if report.passed else 'FAILED'}")
    return "\n".join(lines)

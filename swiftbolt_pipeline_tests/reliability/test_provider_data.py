"""Bad provider data over real HTTP into a real PostgreSQL: a fake Polygon serves the
emulator's real bars, damaged in the ways real providers fail, and the archive must end up with
exactly the bars the rules keep — counted per rule, each partition written whole or not at all."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import dagster as dg
import httpx
import polars as pl
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clock import SystemClock
from swiftbolt_pipeline.core.errors import ProviderError
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.ingest.history import HistoryTask
from swiftbolt_pipeline.ingest.store import SymbolIngest
from swiftbolt_pipeline.ingest.today import ingest_today
from swiftbolt_pipeline.providers.http import UnlimitedLimiter
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.providers.tradier import TradierClient
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import (
    FakePolygon,
    count_bars,
    ingest_history_routed,
    materialize,
    running_fake_polygon,
    served_bars,
    stored_m15,
)

pytestmark = pytest.mark.reliability

SYMBOL = "SPY"
FIRST, LAST = date(2025, 6, 2), date(2025, 6, 6)
DAYS = calendar.sessions_between(FIRST, LAST)
NEXT_MONDAY = date(2025, 6, 9)
M15_DELTA = timedelta(minutes=15)
Bars = list[dict[str, Any]]


@pytest.fixture
def fake() -> Iterator[FakePolygon]:
    with running_fake_polygon() as server:
        yield server


@pytest.fixture(scope="module")
def source(emulator: str) -> Bars:
    """The emulator's real answer for the week: extended hours included, 1 page."""
    return served_bars(emulator, SYMBOL, FIRST, LAST)


def _expected() -> list[tuple[Any, ...]]:
    return list(regular_m15(SYMBOL, FIRST, LAST).iter_rows())


def _regular(bars: Bars) -> list[int]:
    """Indexes of the regular-session bars in a served list."""
    bounds = [(calendar.session(d).open, calendar.session(d).close) for d in DAYS]
    return [
        i
        for i, b in enumerate(bars)
        if any(o.timestamp() * 1000 <= b["t"] < c.timestamp() * 1000 for o, c in bounds)
    ]


def _ingest(conn: psycopg.Connection, fake: FakePolygon) -> SymbolIngest:
    client = PolygonClient(
        fake.url, "fake-key", UnlimitedLimiter(), SystemClock(), max_attempts=3,
        backoff_base_s=0.001,
    )  # fmt: skip
    try:
        ids = watchlist.ensure(conn, [SYMBOL])
        conn.commit()
        (result,) = ingest_history_routed(
            conn,
            (Provider.POLYGON,),
            lambda _: client,
            run_id="reliability",
            tasks=[HistoryTask(SYMBOL, ids[SYMBOL], DAYS)],
        )
    finally:
        client.close()
    # The symbol's outcome: a failure is raised here, as the run reports it.
    if result.error is not None:
        raise result.error
    return result


def _without(expected: list[tuple[Any, ...]], bars: Bars, indexes: list[int]) -> list[tuple]:
    gone = {bars[i]["t"] for i in indexes}
    return [row for row in expected if int(row[0].timestamp() * 1000) not in gone]


# Each damage takes the served bars and returns (pages, rejected counts, kept-bar rule) where
# the rule maps the real regular-session rows to the rows that must be stored.
Damage = Callable[[Bars], tuple[list[Any], dict[str, int], Callable[[list[tuple]], list[tuple]]]]


def outside_range(bars: Bars) -> tuple[list[Any], dict[str, int], Any]:
    monday = calendar.session(NEXT_MONDAY)
    extra = [
        {**bars[_regular(bars)[0]], "t": int(monday.open.timestamp() * 1000) + i * 900_000}
        for i in range(3)
    ]
    friday = bars[_regular(bars)[-1]]
    saturday = {**friday, "t": friday["t"] + 86_400_000}
    # Pre- and post-market bars of a requested day are routine: dropped, not "rejected".
    premarket = {**bars[0], "t": bars[0]["t"] - 5 * 900_000}
    postmarket = {**friday, "t": friday["t"] + 2 * 900_000}
    pages = [[premarket, *bars, postmarket, saturday, *extra]]
    return pages, {"outside_sessions": 4}, lambda rows: rows


def repeated_page(bars: Bars) -> tuple[list[Any], dict[str, int], Any]:
    cut = len(bars) // 3
    return [bars[:cut], bars[:cut], bars[cut:]], {}, lambda rows: rows


def conflicting_duplicates(bars: Bars) -> tuple[list[Any], dict[str, int], Any]:
    picks = _regular(bars)[10:13]
    changed = []
    for i in picks:
        b = copy.deepcopy(bars[i])
        b["v"] += 1234
        changed.append(b)
    new = {b["t"]: b["v"] for b in changed}

    def keep(rows: list[tuple]) -> list[tuple]:
        return [(*r[:5], new.get(int(r[0].timestamp() * 1000), r[5])) for r in rows]

    return [bars, changed], {"duplicate_conflict": 3}, keep


def inverted_ohlc(bars: Bars) -> tuple[list[Any], dict[str, int], Any]:
    bars = copy.deepcopy(bars)
    picks = _regular(bars)[20:23]
    a, b, c = (bars[i] for i in picks)
    a["h"], a["l"] = a["l"] - 0.01, a["h"] + 0.01  # high < low
    b["h"] = max(b["o"], b["c"]) - 0.01  # high below the body
    c["l"] = min(c["o"], c["c"]) + 0.01  # low above the body
    return [bars], {"ohlc_inconsistent": 3}, lambda rows: _without(rows, bars, picks)


def negative_volume(bars: Bars) -> tuple[list[Any], dict[str, int], Any]:
    bars = copy.deepcopy(bars)
    picks = _regular(bars)[40:42]
    for i in picks:
        bars[i]["v"] = -bars[i]["v"]
    return [bars], {"negative_volume": 2}, lambda rows: _without(rows, bars, picks)


def misaligned(bars: Bars) -> tuple[list[Any], dict[str, int], Any]:
    bars = copy.deepcopy(bars)
    picks = _regular(bars)[60:62]
    originals = copy.deepcopy([bars[i] for i in picks])
    for i in picks:
        bars[i]["t"] += 7 * 60_000
    return [bars], {"off_grid": 2}, lambda rows: _without(rows, originals, [0, 1])


DAMAGES: dict[str, Damage] = {
    "outside_range": outside_range,
    "repeated_page": repeated_page,
    "conflicting_duplicates": conflicting_duplicates,
    "inverted_ohlc": inverted_ohlc,
    "negative_volume": negative_volume,
    "misaligned": misaligned,
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_bad_bars_are_dropped_by_rule_and_counted(
    damage: str, source: Bars, fake: FakePolygon, conn: psycopg.Connection
) -> None:
    pages, rejected, keep = DAMAGES[damage](source)
    fake.pages = pages
    result = _ingest(conn, fake)
    assert result.rejected == rejected
    assert len(fake.requests) == len(pages)
    assert stored_m15(conn, SYMBOL) == keep(_expected())
    assert result.bars_written == len(keep(_expected()))
    if damage == "outside_range":
        assert result.cleaning.counts["extended_hours"] == 2
    assert result.cleaning.served == sum(len(p) for p in pages)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"OK","results":[{"t":1748871000000,"o":null,"h":1,"l":1,"c":1,"v":1}]}',
        b'{"status":"OK","results":[{"t":1748871000000,"o":NaN,"h":1,"l":1,"c":1,"v":1}]}',
        b'{"status":"OK","results":[{"t":1748871000000,"o":1,"h":1,"l":1,"c":1}]}',
        b'{"status":"OK","results":[{"t":"x","o":1,"h":1,"l":1,"c":1,"v":1}]}',
    ],
    ids=["null", "NaN", "missing", "string"],
)
def test_null_nan_or_missing_fields_fail_the_window_and_write_nothing_of_that_page(
    body: bytes, source: Bars, fake: FakePolygon, conn: psycopg.Connection
) -> None:
    """Owned by the parser: a page with a bar it cannot read is MALFORMED_RESPONSE as a whole;
    none of it (not even its good bars) is stored. Sessions an earlier page completed stay,
    committed with the checkpoint (a resumed fetch starts after them)."""
    good = _regular(source)
    bad = body.replace(b"1748871000000", str(source[good[30]]["t"]).encode())
    fake.pages = [source[: good[30]], bad]  # page 1 completes the first session only
    with pytest.raises(ProviderError) as info:
        _ingest(conn, fake)
    assert info.value.code == "MALFORMED_RESPONSE"
    first_day = [r for r in _expected() if calendar.exchange_date(r[0]) == DAYS[0]]
    assert stored_m15(conn, SYMBOL) == first_day
    row = conn.execute("SELECT status, error_code, rows_written FROM job_runs").fetchone()
    assert row == ("failed", "MALFORMED_RESPONSE", 26)


def test_bars_of_another_size_fail_the_window_instead_of_passing_as_m15(
    source: Bars, fake: FakePolygon, conn: psycopg.Connection
) -> None:
    """5-minute bars: one in three sits on the 15-minute grid, but is not a 15-minute bar."""
    five = [{**b, "t": b["t"] + k * 300_000, "v": b["v"] // 3} for b in source for k in range(3)]
    fake.pages = [five]
    with pytest.raises(ProviderError) as info:
        _ingest(conn, fake)
    assert info.value.code == "MALFORMED_RESPONSE"
    assert "off the 15-minute grid" in info.value.message
    assert count_bars(conn) == 0
    row = conn.execute("SELECT status, error_code FROM job_runs").fetchone()
    assert row == ("failed", "MALFORMED_RESPONSE")


def test_a_window_failing_on_a_later_page_keeps_the_whole_sessions_it_completed(
    source: Bars, fake: FakePolygon, conn: psycopg.Connection
) -> None:
    cut = _regular(source)[60]  # page 1 ends inside the third session
    fake.pages = [source[:cut], 503, 503, 503]
    with pytest.raises(ProviderError) as info:
        _ingest(conn, fake)
    assert info.value.code == "PROVIDER_UNAVAILABLE"
    assert len(fake.requests) == 4  # page 1, then page 2 three times (bounded)
    assert stored_m15(conn, SYMBOL) == [
        r for r in _expected() if calendar.exchange_date(r[0]) in DAYS[:2]
    ]
    checkpoint = conn.execute("SELECT last_ts FROM provider_checkpoints").fetchone()
    assert checkpoint == (calendar.session(DAYS[1]).close,)


def test_a_window_with_nothing_usable_keeps_the_archive(
    source: Bars, fake: FakePolygon, conn: psycopg.Connection
) -> None:
    fake.pages = [source]
    _ingest(conn, fake)
    before = stored_m15(conn, SYMBOL)
    assert before == _expected()
    garbage = copy.deepcopy(source)
    for b in garbage:
        b["v"] = -1
    fake.pages = [garbage]
    result = _ingest(conn, fake)
    assert result.bars_written == 0
    assert result.rejected == {"negative_volume": len(_regular(source))}
    assert sorted(result.empty_days) == DAYS
    assert stored_m15(conn, SYMBOL) == before


def test_a_day_with_every_bar_rejected_keeps_its_stored_bars(
    source: Bars, fake: FakePolygon, conn: psycopg.Connection
) -> None:
    fake.pages = [source]
    _ingest(conn, fake)
    before = stored_m15(conn, SYMBOL)
    damaged = copy.deepcopy(source)
    wednesday = calendar.session(date(2025, 6, 4))
    lo, hi = wednesday.open.timestamp() * 1000, wednesday.close.timestamp() * 1000
    for b in damaged:
        if lo <= b["t"] < hi:
            b["h"] = b["l"] - 1
        else:
            b["v"] += 1  # every other day changes, so a rewrite is visible
    fake.pages = [damaged]
    result = _ingest(conn, fake)
    assert result.rejected == {"ohlc_inconsistent": 26}
    assert date(2025, 6, 4) in result.empty_days
    after = stored_m15(conn, SYMBOL)
    on_wednesday = [r for r in after if calendar.exchange_date(r[0]) == date(2025, 6, 4)]
    assert on_wednesday == [r for r in before if calendar.exchange_date(r[0]) == date(2025, 6, 4)]
    assert len(after) == len(before)
    assert [r[5] for r in after if r not in on_wednesday] == [
        r[5] + 1 for r in before if calendar.exchange_date(r[0]) != date(2025, 6, 4)
    ]


def test_everything_at_once_through_the_asset_leaves_the_checks_green(
    source: Bars, fake: FakePolygon, conn: psycopg.Connection, pipeline_env: dict[str, str]
) -> None:
    """All the damage in one response, through Dagster: the run succeeds, the stored bars are
    exactly the real ones minus the rejected, and the OHLC/duplicate/count checks pass."""
    bars = copy.deepcopy(source)
    regular = _regular(bars)
    rng = random.Random(7)
    inverted, negative, shifted = regular[5:8], regular[50:52], regular[90:91]
    for i in inverted:
        bars[i]["h"], bars[i]["l"] = bars[i]["l"] - 0.01, bars[i]["h"] + 0.01
    for i in negative:
        bars[i]["v"] = -1
    originals = [copy.deepcopy(bars[i]) for i in shifted]
    for i in shifted:
        bars[i]["t"] += 60_000
    repeat = bars[: len(bars) // 2]
    rng.shuffle(repeat)
    fake.pages = [bars[: len(bars) // 2], repeat, bars[len(bars) // 2 :]]
    with dg.instance_for_test() as instance:
        outcome = materialize(SYMBOL, DAYS, instance, polygon={"base_url": fake.url})
    assert outcome.success, outcome.error
    checks = {(c.name, c.passed) for c in outcome.checks}
    assert {("ohlc_sane", True), ("no_duplicate_timestamps", True)} <= checks
    assert ("bar_counts_match_calendar", True) in checks
    counts = next(c for c in outcome.checks if c.name == "bar_counts_match_calendar")
    assert counts.metadata["missing_intervals"] == 6
    assert counts.metadata["off_grid_bars"] == 0
    data = next(c for c in outcome.checks if c.name == "provider_data_clean")
    # Counted as served: the repeated page delivers the first half's bad bars a second time.
    assert not data.passed and data.metadata["rejected_bars"] == 11
    assert (
        data.metadata["rejected_ohlc_inconsistent"],
        data.metadata["rejected_negative_volume"],
        data.metadata["rejected_off_grid"],
    ) == (6, 4, 1)
    expected = _without(_without(_expected(), bars, inverted + negative), originals, [0])
    assert stored_m15(conn, SYMBOL) == expected
    stored = pl.DataFrame(stored_m15(conn, SYMBOL), orient="row")
    assert stored.height == 5 * 26 - 6


def test_todays_tradier_bars_go_through_the_same_rules(conn: psycopg.Connection) -> None:
    """Today's refresh (httpx.MockTransport as Tradier): an inverted bar and a negative volume
    are rejected and counted, the rest of today's complete bars stored as intraday."""
    day = date(2026, 3, 20)
    session = calendar.session(day)
    rows = []
    for i in range(8):
        start = session.open + i * M15_DELTA
        rows.append(
            {
                "time": start.astimezone(calendar.EXCHANGE_TZ).strftime("%Y-%m-%dT%H:%M:%S"),
                "timestamp": int(start.timestamp()),
                "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5,
                "volume": 1000 + i, "vwap": 10.2,
            }
        )  # fmt: skip
    rows[2]["high"] = 8.5  # below the low
    rows[5]["volume"] = -10
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json={"series": {"data": rows}})
    )
    client = TradierClient(
        "https://tradier.test", "fake-token", UnlimitedLimiter(), SystemClock(),
        transport=transport,
    )  # fmt: skip
    ids = watchlist.ensure(conn, ["AAPL"])
    conn.commit()
    try:
        result = ingest_today(
            conn, client, run_id="reliability", symbol="AAPL", symbol_id=ids["AAPL"], day=day,
            now=session.open + 8 * M15_DELTA,
        )  # fmt: skip
    finally:
        client.close()
    assert result.rejected == {"ohlc_inconsistent": 1, "negative_volume": 1}
    stored = conn.execute(
        "SELECT ts, volume, provider, is_intraday FROM ohlc_bars_v2 ORDER BY ts"
    ).fetchall()
    assert [(ts, v) for ts, v, _, _ in stored] == [
        (session.open + i * M15_DELTA, 1000 + i) for i in range(8) if i not in (2, 5)
    ]
    assert {(p, intraday) for _, _, p, intraday in stored} == {("tradier", True)}

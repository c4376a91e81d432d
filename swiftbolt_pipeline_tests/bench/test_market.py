"""The market-scale bench: its request floor and truth, and (slow) the quick run end to end."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import pytest

from swiftbolt_pipeline.bench import write_report
from swiftbolt_pipeline.bench.market import MarketSizes, request_floor, run_market, truth_bars
from swiftbolt_pipeline.emulator.data import BarStore
from swiftbolt_pipeline.emulator.sessions import day_start_ms


def test_floor_is_pages_per_batch_of_50_in_ticker_order() -> None:
    # 120 members: batches A000-A049, A050-A099, A100-A119 (ticker order, not dict order).
    bars = {f"A{k:03d}": 300 for k in reversed(range(120))}
    bars["A000"] = 5_000  # batch 1: 49 x 300 + 5,000 = 19,700 bars -> 2 pages
    bars["A119"] = 9_700  # batch 3: 19 x 300 + 9,700 = 15,400 bars -> 2 pages
    # batch 2: 50 x 300 = 15,000 bars -> 2 pages
    assert request_floor(bars) == 2 + 2 + 2
    assert request_floor({"X": 0}) == 1  # a batch is a request even when it answers nothing
    assert request_floor({f"B{k}": 200 for k in range(50)}) == 1  # exactly 10,000: one page


def test_truth_counts_the_15_minute_buckets_holding_base_bars() -> None:
    days = [date(2025, 3, 3), date(2025, 3, 4)]
    truth = truth_bars(["TRUTHX", "ZZNOPE"], days)
    base = BarStore().bars("TRUTHX", day_start_ms(days[0]), day_start_ms(date(2025, 3, 5)))
    buckets = {int(t) // 900_000 for t in base.t}  # 15-minute buckets with at least one bar
    assert truth == {"TRUTHX": len(buckets), "ZZNOPE": 0}
    assert 2 * 26 < truth["TRUTHX"] <= 2 * 64  # the regular session and some extended hours


@pytest.mark.slow
@pytest.mark.usefixtures("clean_env")
def test_quick_market_bench_end_to_end(tmp_path: Path) -> None:
    report = run_market(MarketSizes.quick(), workdir=tmp_path)
    rows = {row.metric.split(",")[0]: row for row in report.rows}
    requests = rows["alpaca requests"]
    # 60 members x 4 sessions: two batches (50 + 10); the first answer holds more than
    # 10,000 bars (extended hours included), so 2 + 1 requests, the floor as well.
    assert (requests.measured, requests.reference) == (3, 3) and requests.met
    assert "Archive exact" in requests.note
    free = report.details["free_plan"]
    assert free["success"] and free["rejected_429"] == 0
    # Each of the 4 day partitions x 2 assets has at least its materialization event.
    assert free["events"] >= 8 and rows["Dagster events per symbol-session"].measured > 0
    paid = rows["paid plan (100 req/s): end-to-end m15 bars/s vs raw COPY"]
    assert paid.measured > 0 and paid.reference > 0 and "Archive exact" in paid.note
    assert report.details["raw_copy"]["rows"] == report.details["paid_60"]["m15_rows"]
    for row in report.rows:
        assert math.isfinite(row.measured) and math.isfinite(row.reference), row
    md, js = write_report(report, tmp_path / "out", stem="market-scale")
    assert json.loads(js.read_text())["sizes"]["symbols"] == 60
    assert "alpaca requests, 60 sym x 4 sessions" in md.read_text()

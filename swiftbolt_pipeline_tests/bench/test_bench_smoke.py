"""The bench harness end to end with tiny sizes: every row, finite numbers, both files."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from swiftbolt_pipeline.bench import BenchSizes, render_table, run_bench, write_report
from swiftbolt_pipeline.bench.report import render_markdown

SECTIONS = {"1", "2", "3", "4", "5", "6", "7"}


@pytest.mark.slow  # a whole tiny bench run; CI's slow suite runs it
@pytest.mark.usefixtures("clean_env")
def test_tiny_bench_produces_every_row_and_both_files(tmp_path: Path) -> None:
    before = dict(os.environ)
    report = run_bench(BenchSizes.tiny(), workdir=tmp_path)
    assert dict(os.environ) == before, "the bench must restore the environment"

    assert {row.section for row in report.rows} == SECTIONS
    for row in report.rows:
        if row.skipped:
            assert row.section == "7", f"only the API row may be skipped: {row}"
            continue
        assert math.isfinite(row.measured), row
        assert math.isfinite(row.reference) and row.reference > 0, row
        assert math.isfinite(row.ratio), row
    by_metric = {row.metric: row for row in report.rows}
    requests = next(r for m, r in by_metric.items() if m.startswith("polygon requests, 1"))
    assert requests.met, "a handful of sessions is one request"
    m5 = next(r for m, r in by_metric.items() if m.startswith("polygon requests, m5 vs m15"))
    assert m5.met and m5.ratio == 1.0, "m5 costs the requests of m15"
    # Official d1 (2 year partitions) and one crypto pair (3 UTC days): one request each.
    for kind in ("official d1 of SPY x 2", "crypto X:BTCUSD x 3"):
        row = next(r for m, r in by_metric.items() if m.startswith(f"polygon requests, {kind}"))
        assert (row.measured, row.reference, row.met) == (1, 1, True), row
    http429 = next(r for m, r in by_metric.items() if m.startswith("HTTP 429"))
    assert http429.measured == 0

    md, js = write_report(report, tmp_path / "out")
    data = json.loads(js.read_text())
    assert len(data["rows"]) == len(report.rows)
    assert all(set(r) >= {"measured", "reference", "ratio", "met"} for r in data["rows"])
    assert data["machine"]["cores"] and data["sizes"]["sessions"] == 8
    text = md.read_text()
    assert text == render_markdown(report)
    assert "| # | metric | measured | reference | ratio | target | status |" in text
    assert "## Reproduce" in text and "make bench" in text
    render_table(report)  # rich renders without error

"""The opt-in 5-minute bars' request cost: the same symbol and sessions as row 1's m15
backfill, fetched again as m5, counted by the emulator. Polygon's limit counts base minutes,
so the ratio m5 / m15 should be exactly 1."""

from __future__ import annotations

from datetime import date
from typing import Any

from swiftbolt_pipeline.names import M5_BARS, M5_SYMBOLS_PARTITIONS
from swiftbolt_pipeline.services.launch import materialize_range, register_symbols
from swiftbolt_pipeline.storage import ledger

from .env import BenchEnv
from .pipeline import Backfill
from .report import Row


def measure_m5_requests(
    env: BenchEnv, days: list[date], m15: Backfill
) -> tuple[list[Row], dict[str, Any]]:
    """Row 1's symbol, opted in to m5, backfilled over the same sessions in one run."""
    (symbol,) = m15.symbols
    register_symbols(env.instance, [symbol], M5_SYMBOLS_PARTITIONS)
    before, _ = env.emulator_counts()
    outcome = materialize_range(
        env.instance, env.assets, env.resources, symbols=[symbol], days=days,
        selection=[M5_BARS], log_level="ERROR",
    )  # fmt: skip
    if not outcome.success:
        raise RuntimeError(f"m5 backfill failed: {outcome.error}")
    after, _ = env.emulator_counts()
    with env.connect() as conn:
        cost = ledger.run_cost(conn, [outcome.run_id])
    requests = after - before
    row = Row(
        section="1",
        metric=f"polygon requests, m5 vs m15, 1 symbol x {len(days)} sessions",
        measured=requests,
        unit="req",
        reference=m15.requests,
        reference_label="req of its m15",
        target="= 1.00",
        met=requests == m15.requests,
        note=(
            f"The same symbol and sessions as the row above, as 5-minute bars (`m5_bars`, one "
            f"run): counted by the emulator; the ledger says {cost.actual_cost} made, "
            f"{cost.expected_cost} planned, {cost.rows_written:,} m5 bars written (m15: "
            f"{m15.rows_written:,} rows over its assets). Polygon's `limit` counts base "
            "minutes, so m5 takes the m15 request windows."
        ),
    )
    return [row], {"m5_requests": requests, "m15_requests": m15.requests,
                   "m5_rows": cost.rows_written}  # fmt: skip

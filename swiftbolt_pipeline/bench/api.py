"""Row 7: HTTP API latency from `latency.measure_api_latency`: p50/p99 of `/v1/bars` (one year
of h1 bars) and `/v1/coverage` over real HTTP. A failure skips the row with a note instead of
failing the whole bench."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from .env import BenchEnv
from .latency import measure_api_latency
from .report import Row

INTERACTIVE_BUDGET_MS = 100.0
API_SYMBOL = "APIB"


def _skip(note: str) -> list[Row]:
    return [
        Row(
            section="7",
            metric="API latency p50/p99 (/v1/bars, /v1/coverage)",
            measured=math.nan,
            unit="ms",
            reference=INTERACTIVE_BUDGET_MS,
            reference_label="ms budget",
            target="< 1",
            skipped=True,
            note=note,
        )
    ]


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    return dict(getattr(item, "__dict__", {}))


def _endpoints(raw: Any) -> list[dict[str, Any]]:
    data = _as_dict(raw)
    items = data.get("endpoints", raw if isinstance(raw, list | tuple) else [])
    return [_as_dict(e) for e in items]


def _number(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def measure_api(env: BenchEnv, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    try:
        raw = measure_api_latency(
            env.database_url,
            symbol=API_SYMBOL,
            requests=20 if quick else 200,
            concurrency=(1, 4) if quick else (1, 8),
            instance_factory=lambda: contextlib.nullcontext(env.instance),
            settings_factory=lambda: env.settings,
            seed=True,
        )
        endpoints = _endpoints(raw)
    except Exception as exc:
        return _skip(f"`measure_api_latency` failed: {type(exc).__name__}: {exc}"[:300]), {}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in endpoints:
        by_name.setdefault(str(record.get("endpoint", "api")), []).append(record)
    rows: list[Row] = []
    bars = _as_dict(raw).get("bars_per_response")
    for name, records in by_name.items():
        records.sort(key=lambda r: _number(r, "concurrency") or 1)
        base = records[0]
        others = "; ".join(
            f"{int(_number(r, 'concurrency') or 0)} clients: p50 {_number(r, 'p50_ms') or 0:.1f} "
            f"ms, p99 {_number(r, 'p99_ms') or 0:.1f} ms, "
            f"{_number(r, 'requests_per_s') or 0:,.0f} req/s"
            for r in records
        )
        what = f"{bars} h1 bars/response" if name.endswith("bars") and bars else "h1, 365 days"
        for label in ("p50", "p99"):
            value = _number(base, f"{label}_ms")
            if value is None:
                continue
            rows.append(
                Row(
                    section="7",
                    metric=f"API {name} latency {label} ({what}, 1 client)",
                    measured=value,
                    unit="ms",
                    reference=INTERACTIVE_BUDGET_MS,
                    reference_label="ms budget",
                    target="< 1",
                    met=value < INTERACTIVE_BUDGET_MS,
                    note=(
                        f"`measure_api_latency`: uvicorn on a local port, real HTTP, "
                        f"{int(_number(base, 'requests') or 0)} requests per level. {others}."
                    ),
                )
            )
    if not rows:
        return _skip(f"`measure_api_latency` returned no p50/p99 figures: {raw!r:.200}"), {}
    return rows, {"endpoints": endpoints, "bars_per_response": bars}

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from swiftbolt_pipeline.emulator.data import BarStore, is_listed
from swiftbolt_pipeline.emulator.sessions import day_start_ms
from swiftbolt_pipeline_tests.emulator.emulator_helpers import aggs

FINGERPRINT = """
from datetime import date
from swiftbolt_pipeline.emulator.data import BarStore
from swiftbolt_pipeline.emulator.sessions import day_start_ms
b = BarStore().bars("DETX", day_start_ms(date(2025, 3, 3)), day_start_ms(date(2025, 3, 8)))
print(len(b), float(b.c.sum()), int(b.v.sum()), int(b.t.sum()))
"""


def _fingerprint_here() -> str:
    b = BarStore().bars("DETX", day_start_ms(date(2025, 3, 3)), day_start_ms(date(2025, 3, 8)))
    return f"{len(b)} {float(b.c.sum())} {int(b.v.sum())} {int(b.t.sum())}"


def test_generated_is_deterministic_across_requests_and_processes(emu: str) -> None:
    a = aggs(emu, "DETX", "2025-03-03", "2025-03-07", mult=1, limit=50000).json()["results"]
    b = aggs(emu, "DETX", "2025-03-03", "2025-03-07", mult=1, limit=50000).json()["results"]
    other = aggs(emu, "DETY", "2025-03-03", "2025-03-07", mult=1, limit=50000).json()["results"]
    assert a == b and len(a) > 1000
    assert [x["c"] for x in a[:50]] != [x["c"] for x in other[:50]]
    out = subprocess.run(
        [sys.executable, "-c", FINGERPRINT],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == _fingerprint_here()


def test_generated_bars_are_realistic(emu: str) -> None:
    # Thanksgiving week 2025: holiday 11-27, early close 11-28, weekend 11-29/30
    bars = aggs(emu, "REAL", "2025-11-24", "2025-12-01", mult=1, limit=50000).json()["results"]
    days: dict[date, list[dict[str, float]]] = {}
    for b in bars:
        d = datetime.fromtimestamp(b["t"] / 1000, UTC).astimezone(_ny()).date()
        days.setdefault(d, []).append(b)
    assert sorted(days) == [date(2025, 11, d) for d in (24, 25, 26, 28)] + [date(2025, 12, 1)]
    for d, day_bars in days.items():
        early = d == date(2025, 11, 28)
        open_ms = _et_ms(d, 9, 30)
        close_ms = _et_ms(d, 13 if early else 16, 0)
        regular = [b for b in day_bars if open_ms <= b["t"] < close_ms]
        ext = [b for b in day_bars if not open_ms <= b["t"] < close_ms]
        reg_minutes = (close_ms - open_ms) // 60_000
        ext_minutes = (_et_ms(d, 17 if early else 20, 0) - _et_ms(d, 4, 0)) // 60_000 - reg_minutes
        assert len(regular) >= 0.95 * reg_minutes
        assert 0.03 * ext_minutes < len(ext) < 0.6 * ext_minutes
        assert min(b["t"] for b in day_bars) >= _et_ms(d, 4, 0)
        assert max(b["t"] for b in day_bars) < _et_ms(d, 17 if early else 20, 0)
        assert sum(b["v"] for b in regular) > 5 * sum(b["v"] for b in ext)
    closes = [b["c"] for b in bars]
    assert min(closes) > 1 and max(closes) / min(closes) < 1.5
    for b in bars:
        assert b["l"] <= min(b["o"], b["c"]) <= max(b["o"], b["c"]) <= b["h"]
        assert b["l"] <= b["vw"] <= b["h"]
        assert b["v"] > 0 and isinstance(b["v"], int) and b["n"] >= 1


def test_two_years_of_one_ticker_is_fast(emu: str) -> None:
    import time

    t0 = time.monotonic()
    store = BarStore()
    bars = store.bars("FASTX", day_start_ms(date(2024, 11, 1)), day_start_ms(date(2026, 11, 1)))
    assert len(bars) > 200_000
    assert time.monotonic() - t0 < 2.0


def test_unlisted_rule() -> None:
    assert not is_listed("ZZTOP") and is_listed("AAPL") and not is_listed("")


def _ny() -> ZoneInfo:
    return ZoneInfo("America/New_York")


def _et_ms(d: date, h: int, m: int) -> int:
    return int(datetime(d.year, d.month, d.day, h, m, tzinfo=_ny()).timestamp() * 1000)

"""`swiftbolt tokens`: limits mean what they say, and the status shows the sustained rate."""

from __future__ import annotations

from pathlib import Path

from swiftbolt_pipeline_tests.reliability.helpers import invoke


def test_tokens_set_and_status_print_the_sustained_rate(db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url, "SWIFTBOLT_HOME": str(tmp_path)}
    fast = invoke(["tokens", "set", "polygon", "--capacity", "1", "--refill-per-min", "600"], env)
    assert fast.returncode == 0, fast.stderr
    assert fast.stdout.strip() == (
        "polygon: capacity 1, refill 600/min, window 61s = 590.2 requests/min (9.836/s) sustained, "
        "bursts of at most 1"
    )
    status = invoke(["tokens", "polygon"], env)
    assert status.returncode == 0, status.stderr
    header, row = status.stdout.splitlines()
    assert header.split() == [
        "provider", "available", "capacity", "refill/min", "full", "in", "window",
        "sustained/min", "sustained/s",
    ]  # fmt: skip
    assert row.split() == ["polygon", "1.00", "1", "600", "0.0s", "61s", "590.2", "9.836"]
    # The free plan: 5 per minute, at most 5 in any 61 s, so 5 * 60 / 61 = 4.918 per minute.
    free = invoke(["tokens", "set", "polygon", "--capacity", "5", "--refill-per-min", "5"], env)
    assert "= 4.918 requests/min (0.08197/s) sustained" in free.stdout
    (_, row) = invoke(["tokens", "polygon"], env).stdout.splitlines()
    assert row.split()[-2:] == ["4.918", "0.08197"]

"""Section 9 (`swiftbolt bench --hosts 1,2,4`): the same backfill with 1, 2 and 4 worker hosts.

Each host is a network namespace running `swiftbolt worker --concurrency 1` (`netns.py`); the
backfill is `swiftbolt backfill` with SWIFTBOLT_EXECUTOR=celery, one run per symbol, the runs
in parallel up to the instance's run cap. The provider answers every request after a fixed
latency (one request per symbol), and the token bucket is
unlimited: the workload is bound by provider latency, which more hosts overlap, not by the
rate limit, which no number of hosts can beat. The `polygon` pool is raised to the number of
hosts (by default it lets two fetching steps run at once, over all hosts).

Needs root (namespaces), RabbitMQ and Redis on this machine and a PostgreSQL server in
DATABASE_URL (the hosts reach it over TCP; an embedded server listens on a local socket)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.storage import ratelimit

from . import netns
from .env import BENCH_KEY, BENCH_NOW, UNLIMITED, scratch_database, two_years_before
from .report import BenchReport, Row, command_line, machine_info, now_iso

SECTION = "9"
PASSTHROUGH = ("PATH", "HOME", "LANG", "TMPDIR")
BACKEND = "redis://127.0.0.1:6379/0"
_DONE = re.compile(r"Done in ([0-9.]+)s")


@dataclass(frozen=True)
class HostsWorkload:
    symbols: int = 8
    sessions: int = 5
    # Each symbol's sessions fit one Polygon request, answered after this long: the fetch
    # outlasts the Dagster work of a run's other steps (about a second each).
    latency_s: float = 20.0


def parse_counts(raw: str) -> list[int]:
    """`1,2,4` -> [1, 2, 4]: distinct positive host counts, in the order given."""
    try:
        counts = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise InvalidInput("INVALID_INPUT", f"--hosts {raw!r}: distinct host counts, e.g. 1,2,4")
    return counts


def run_hosts(
    counts: Sequence[int],
    workload: HostsWorkload | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchReport:
    """One backfill of `workload` per host count; rows of wall time and throughput."""
    workload = workload or HostsWorkload()
    started_at, started = now_iso(), time.perf_counter()
    reason = netns.available()
    if reason is None and not os.environ.get("DATABASE_URL", "").strip():
        reason = "needs DATABASE_URL: a PostgreSQL server the hosts reach over TCP"
    details: dict[str, Any] = {"workload": asdict(workload)}
    if reason is not None:
        rows = [_skipped(n, reason) for n in counts]
        label = "-"
    else:
        rows, label = _measure(counts, workload, progress, details)
    return BenchReport(
        rows=rows,
        machine=machine_info(label),
        sizes={"hosts": list(counts), **asdict(workload)},
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        command=command_line(),
        details=details,
    )


def _skipped(hosts: int, reason: str) -> Row:
    return Row(SECTION, f"backfill throughput, {hosts} worker host(s)", 0.0, "partitions/min",
               0.0, "-", skipped=True, note=f"skipped: {reason}")  # fmt: skip


def _measure(
    counts: Sequence[int],
    workload: HostsWorkload,
    progress: Callable[[str], None],
    details: dict[str, Any],
) -> tuple[list[Row], str]:
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url, label = stack.enter_context(scratch_database(home))
        emulator = stack.enter_context(running_emulator(EmulatorSettings(api_key=BENCH_KEY)))
        vhost = stack.enter_context(netns.rabbitmq_vhost("swiftbolt-bench"))
        env = {
            **{k: os.environ[k] for k in PASSTHROUGH if k in os.environ},
            "DATABASE_URL": url,
            "POLYGON_API_KEY": BENCH_KEY,
            "POLYGON_BASE_URL": emulator,
            "SWIFTBOLT_HOME": str(home / "launcher"),
            "SWIFTBOLT_NOW": BENCH_NOW,
            "SWIFTBOLT_HISTORY_START": two_years_before(BENCH_NOW).isoformat(),
            "SWIFTBOLT_EXECUTOR": "celery",
            "SWIFTBOLT_CELERY_BROKER": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "SWIFTBOLT_CELERY_BACKEND": BACKEND,
        }
        _swiftbolt(env, "db", "migrate")
        with psycopg.connect(url) as conn:
            ratelimit.set_limits(
                conn,
                "polygon",
                capacity=int(UNLIMITED["capacity"]),
                refill_per_min=UNLIMITED["refill_per_min"],
                window_s=UNLIMITED["window_s"],
            )
        settings = Settings.from_env(env)
        prepare_dagster_home(settings)
        with open_instance(settings) as instance:
            instance.event_log_storage.set_concurrency_slots("polygon", max(counts))
        today = settings.today
        days = calendar.sessions_between(two_years_before(BENCH_NOW), today)[:-1]
        days = days[-workload.sessions :]
        ports = [netns.url_port(url, 5432), 5672, 6379, netns.url_port(emulator, 80)]
        walls: dict[int, float] = {}
        for n in counts:
            progress(f"{n} worker host(s)")
            _emulator(emulator, workload)
            symbols = [f"HB{n}X{i:02d}" for i in range(workload.symbols)]
            with netns.hosts(n, ports) as hosts:
                logs = [home / f"{host.name}.log" for host in hosts]
                for host, log in zip(hosts, logs, strict=True):
                    host.start_worker(netns.worker_env(env, host, home=home / host.name), log)
                for log in logs:
                    netns.wait_for(lambda log=log: "ready." in log.read_text(), 180, log.name)
                err = _swiftbolt(
                    env, "backfill", "--symbols", ",".join(symbols),
                    "--start", days[0].isoformat(), "--end", days[-1].isoformat(),
                )  # fmt: skip
            match = _DONE.search(err)
            if match is None:
                raise RuntimeError(f"backfill with {n} host(s) printed no summary: {err[-2000:]}")
            walls[n] = float(match.group(1))
            stats = _get(emulator, "stats")
            details[f"hosts_{n}"] = {
                "wall_s": walls[n],
                "requests": stats["requests"]["polygon"],
                "rejected_429": stats["rejected_429"]["polygon"],
            }
    partitions = workload.symbols * workload.sessions
    base = walls[counts[0]]
    rows = []
    for n, wall in walls.items():
        d = details[f"hosts_{n}"]
        rows.append(
            Row(
                SECTION,
                f"backfill throughput, {n} worker host(s)",
                partitions * 60 / wall,
                "partitions/min",
                partitions * 60 / base,
                f"partitions/min with {counts[0]} host(s)",
                target="info",
                note=(
                    f"{workload.symbols} symbols x {workload.sessions} sessions, all four "
                    f"assets, {wall:.1f} s (the backfill's own 'Done in'); {d['requests']} "
                    f"Polygon requests of {workload.latency_s:g} s each, "
                    f"{d['rejected_429']} x 429. Hosts are "
                    "network namespaces of one machine: they share its cores, so the steps' "
                    "Dagster work (planning, events, checks) does not scale with them; the "
                    "provider's latency does."
                ),
            )
        )
    return rows, label


def _emulator(url: str, workload: HostsWorkload) -> None:
    """A fresh emulator with a fixed latency on every Polygon request."""
    _get(url, "reset", method="POST")
    fault = {"route": "polygon", "kind": "delay", "seconds": workload.latency_s, "count": 100_000}
    _get(url, "faults", method="POST", body=fault)


def _get(url: str, path: str, *, method: str = "GET", body: object = None) -> Any:
    import httpx

    response = httpx.request(method, f"{url}/_emulator/{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def _swiftbolt(env: dict[str, str], *args: str) -> str:
    """Run `swiftbolt ARGS`; its stderr (the summary), or RuntimeError when it failed."""
    result = subprocess.run(
        [netns.SWIFTBOLT, *args], env=env, capture_output=True, text=True, timeout=1800,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"swiftbolt {args[0]} failed: {result.stderr[-2000:]}")
    return result.stderr

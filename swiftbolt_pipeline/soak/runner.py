"""Drive the real automation over the plan's simulated sessions, then audit.

What runs is the product's own code: `build_definitions()` (rebuilt each simulated day, since
its day partitions end "today"), its sensors and schedules evaluated tick by tick with the
sensors' cursors kept, and every RunRequest launched as a `bars_job` run on a Dagster instance
stored in PostgreSQL with the tags the daemon would give it (the request's tags plus
`dagster/sensor_name` or `dagster/schedule_name` and `dagster/run_key`; a run key already used
by that sensor or schedule is skipped, as the daemon does). Runs execute in process, one after
another (`execute_in_process`); the "worker killed" event runs one in a real child process and
SIGKILLs it. The daemon's run monitoring cannot see a dead worker with the default run
launcher, so nothing marks that run failed here either.

Time is compressed: a simulated day passes in seconds, so the limits that count real time are
scaled alike (Polygon's 5/min budget becomes 600/min on both the bucket and the emulator,
keeping their ratio; the breaker cools down in 1 s instead of 60 s).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.defs.build import build_definitions, build_resources
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline.emulator.data import BarStore
from swiftbolt_pipeline.names import SOAK_WORKER_TAG
from swiftbolt_pipeline.services.instance import (
    dagster_environment,
    open_instance,
    prepare_dagster_home,
)
from swiftbolt_pipeline.services.launch import as_single_run, configure_pools
from swiftbolt_pipeline.services.runtime import ensure_providers, open_runtime
from swiftbolt_pipeline.soak import pg
from swiftbolt_pipeline.soak.audit import AuditReport, EmulatorCounters, run_audit
from swiftbolt_pipeline.soak.plan import (
    ADD_SYMBOL,
    DROP_TRADIER,
    ET,
    KILL_WORKER,
    OUTAGE_END,
    OUTAGE_START,
    PG_RESTART,
    REAL_LOOKING_POLYGON_KEY,
    SPLIT,
    TRADIER_TOKEN,
    Event,
    SoakPlan,
    ticks,
)
from swiftbolt_pipeline.storage import ledger, ratelimit, watchlist

SCALED_RATE_PER_MIN = 600
SENSORS = ("watchlist_sensor", "coverage_gap_sensor", "corporate_actions_sensor")
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
PG_RESTART_DELAY_S = 1.0  # into the tick's runs, so a run is cut mid-way
KILL_DELAY_S = 5.0  # the killed run's Polygon answer is held this long


@dataclass
class Tally:
    runs: int = 0
    failed: int = 0
    skipped_run_keys: int = 0
    events: list[str] = field(default_factory=list)


class Simulation:
    def __init__(self, plan: SoakPlan, log: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.log = log
        self.tally = Tally()
        self.cursors: dict[str, str | None] = {}
        self.kill_next = False
        self._defs_day: date | None = None
        self._defs: dg.Definitions | None = None
        # The simulated configuration over this process's environment (None unsets): the
        # clock (`SWIFTBOLT_NOW`) moves every tick, as if the product were restarted with it.
        self._overrides: dict[str, str | None] = {}

    def _export(self, values: Mapping[str, str | None]) -> None:
        self._overrides.update(values)

    def _environ(self) -> dict[str, str]:
        merged = {**os.environ, **self._overrides}
        return {key: value for key, value in merged.items() if value is not None}

    def _settings(self) -> Settings:
        return Settings.from_env(self._environ())

    # ------------------------------------------------------------------ set-up

    def run(self) -> AuditReport:
        with ExitStack() as stack:
            root = Path(tempfile.mkdtemp(prefix="sbsoak-", dir="/tmp"))
            self.db = pg.start(root)
            stack.callback(self.db.stop)
            self.emulator = stack.enter_context(
                running_emulator(
                    EmulatorSettings(
                        api_key=REAL_LOOKING_POLYGON_KEY,
                        tradier_token=TRADIER_TOKEN,
                        rate_limit=SCALED_RATE_PER_MIN,
                        rate_window_s=60,
                    )
                )
            )
            self._configure_emulator()
            first = self.plan.sessions[0] - timedelta(days=1)
            self._set_clock(datetime.combine(first, datetime.min.time(), ET))
            self._export(
                {
                    "DATABASE_URL": self.db.url,
                    "SWIFTBOLT_HOME": str(root / "home"),
                    "SWIFTBOLT_HISTORY_START": self.plan.history_start.isoformat(),
                    "SWIFTBOLT_BREAKER_COOLDOWN_S": "1",
                    "SWIFTBOLT_HISTORY_PROVIDERS": None,
                    "POLYGON_API_KEY": REAL_LOOKING_POLYGON_KEY,
                    "POLYGON_BASE_URL": self.emulator,
                    "TRADIER_TOKEN": TRADIER_TOKEN,
                    "TRADIER_BASE_URL": self.emulator,
                    **dict.fromkeys(("ALPACA_KEY_ID", "ALPACA_SECRET_KEY", "ALPACA_BASE_URL")),
                }
            )
            self.runtime = open_runtime(self._environ())
            self.log(f"providers: polygon from {ensure_providers(self.runtime).source}")
            prepare_dagster_home(self.runtime.settings)
            with open_instance(self.runtime.settings) as instance:
                configure_pools(instance)
            with self.runtime.connect() as conn:
                for provider in ("polygon", "tradier"):
                    ratelimit.set_limits(
                        conn,
                        provider,
                        capacity=SCALED_RATE_PER_MIN,
                        refill_per_min=SCALED_RATE_PER_MIN,
                    )
                added = set(self.plan.added_at)
                for spec in self.plan.symbols:
                    if spec.ticker not in added:
                        watchlist.add(conn, [spec.ticker], window_days=spec.window_days)
                conn.commit()
            self._loop()
            with self.runtime.connect() as conn:
                report = run_audit(
                    conn, self.plan, EmulatorCounters.read(self.emulator), BarStore()
                )
            return report
        raise AssertionError("unreachable")

    def _configure_emulator(self) -> None:
        lifecycles = [
            {
                "ticker": s.ticker,
                "delisted_after": s.delisted_after.isoformat() if s.delisted_after else None,
                "listed_from": s.listed_from.isoformat() if s.listed_from else None,
                "halted": [d.isoformat() for d in s.halted],
            }
            for s in self.plan.symbols
            if s.role in ("delisted", "halted")
        ]
        httpx.post(f"{self.emulator}/_emulator/lifecycles", json=lifecycles).raise_for_status()
        for key, value in self.plan.emulator_config.items():
            answer = httpx.put(f"{self.emulator}/_emulator/config", json={key: value})
            note = "set" if answer.status_code == 200 else f"NOT SUPPORTED ({answer.text[:80]})"
            self.tally.events.append(f"emulator config {key}={value}: {note}")

    # ------------------------------------------------------------------ the clock

    def _set_clock(self, at: datetime) -> None:
        """The product's clock (its SWIFTBOLT_NOW) and the emulator's move together."""
        self._export({"SWIFTBOLT_NOW": _iso(at)})
        httpx.put(f"{self.emulator}/_emulator/config", json={"now": _iso(at)}).raise_for_status()

    def _loop(self) -> None:
        """Ticks in order. The instance pools its storage connections (several times faster
        than connecting per call); when PostgreSQL restarts under it, the tick fails and is
        evaluated again on a fresh instance, as a restarted daemon process would."""
        stack = ExitStack()
        instance = stack.enter_context(open_instance(self.runtime.settings))
        pending = list(self.plan.events)
        started = time.monotonic()
        all_ticks = ticks(self.plan)
        for n, at in enumerate(all_ticks):
            self._set_clock(at)
            due = [e for e in pending if e.at <= at]
            pending = [e for e in pending if e.at > at]
            restart: threading.Timer | None = None
            for event in due:
                restart = self._event(event, instance) or restart
            if restart is not None:
                restart.start()
            try:
                launched = self._tick(instance, at)
            except Exception as exc:  # the instance's pooled connections died with the server
                if restart is not None:
                    restart.join()
                    restart = None
                self.tally.events.append(f"tick failed ({type(exc).__name__}); instance reopened")
                stack.close()
                instance = stack.enter_context(open_instance(self.runtime.settings))
                launched = self._tick(instance, at)
            if restart is not None:
                restart.join()
            if launched or n % 40 == 0:
                self.log(
                    f"{at.astimezone(ET):%a %Y-%m-%d %H:%M} ET  tick {n + 1}/{len(all_ticks)}  "
                    f"runs {self.tally.runs} (failed {self.tally.failed})  "
                    f"{time.monotonic() - started:.0f}s"
                )
        stack.close()

    def _definitions(self) -> dg.Definitions:
        settings = self._settings()
        if self._defs is None or self._defs_day != settings.today:
            self._defs, self._defs_day = build_definitions(settings), settings.today
        return self._defs

    def _tick(self, instance: dg.DagsterInstance, at: datetime) -> int:
        defs = self._definitions()
        requests: list[tuple[str, str, dg.RunRequest]] = []
        local = at.astimezone(ET)
        if local.weekday() < 5 and 9 <= local.hour <= 16 and local.minute % 15 == 0:
            requests += self._schedule(defs, instance, "today_intraday_schedule", at)
        if local.weekday() < 6 and (local.hour, local.minute) == (6, 0):
            requests += self._schedule(defs, instance, "finalize_previous_session_schedule", at)
        for name in SENSORS:
            requests += self._sensor(defs, instance, name)
        for origin, name, request in requests:
            self._launch(instance, origin, name, as_single_run(request))
        return len(requests)

    def _schedule(
        self, defs: dg.Definitions, instance: dg.DagsterInstance, name: str, at: datetime
    ) -> list[tuple[str, str, dg.RunRequest]]:
        schedule = defs.resolve_schedule_def(name)
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at,
            resources=build_resources(self._settings()),
        ) as context:
            return [("schedule", name, r) for r in _requests(schedule(context))]

    def _sensor(
        self, defs: dg.Definitions, instance: dg.DagsterInstance, name: str
    ) -> list[tuple[str, str, dg.RunRequest]]:
        sensor = defs.resolve_sensor_def(name)
        with dg.build_sensor_context(
            instance=instance,
            cursor=self.cursors.get(name),
            resources=build_resources(self._settings()),
            definitions=defs,
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SensorResult):
            _apply_partitions(instance, result)
            if result.cursor is not None:
                self.cursors[name] = result.cursor
        elif context.cursor is not None:
            self.cursors[name] = context.cursor
        return [("sensor", name, r) for r in _requests(result)]

    # ------------------------------------------------------------------ runs

    def _launch(
        self,
        instance: dg.DagsterInstance,
        origin: str,
        name: str,
        request: dg.RunRequest,
    ) -> None:
        tags = {**request.tags, f"dagster/{origin}_name": name}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
            existing = instance.get_runs(
                filters=dg.RunsFilter(
                    tags={"dagster/run_key": request.run_key, f"dagster/{origin}_name": name}
                ),
                limit=1,
            )
            if existing:
                self.tally.skipped_run_keys += 1
                return
        self.tally.runs += 1
        if self.kill_next:
            self.kill_next = False
            self._run_and_kill(instance, tags)
            return
        # Built for this tick's clock: the definitions carry the settings their runs read.
        job = build_definitions(self._settings()).resolve_job_def(request.job_name or BARS_JOB)
        try:
            result = job.execute_in_process(
                run_config={**QUIET, **dict(request.run_config or {})},
                instance=instance,
                tags=tags,
                asset_selection=request.asset_selection,
                raise_on_error=False,
            )
        except Exception as exc:  # the run's own bookkeeping lost PostgreSQL: it crashed
            self.tally.failed += 1
            self.tally.events.append(f"run of {name} crashed: {type(exc).__name__}")
            raise
        if not result.success:
            self.tally.failed += 1

    def _run_and_kill(self, instance: dg.DagsterInstance, tags: dict[str, str]) -> None:
        """The run in a real child process, SIGKILLed while its fetch is in flight (the
        emulator holds the next Polygon answer for a few seconds), as a worker lost mid-run."""
        marker = f"soak-kill-{time.monotonic_ns()}"
        tags = {**tags, SOAK_WORKER_TAG: marker}
        fault = {"route": "polygon", "kind": "delay", "seconds": KILL_DELAY_S, "count": 1}
        httpx.post(f"{self.emulator}/_emulator/faults", json=fault).raise_for_status()
        proc = subprocess.Popen(
            [sys.executable, "-m", "swiftbolt_pipeline.soak.worker", json.dumps(tags)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**self._environ(), **dagster_environment(self.runtime.settings)},
        )
        deadline = time.monotonic() + 120
        outcome = "finished before it could be killed"
        with self.runtime.connect() as conn:
            while proc.poll() is None and time.monotonic() < deadline:
                runs = instance.get_runs(
                    filters=dg.RunsFilter(tags={SOAK_WORKER_TAG: marker}), limit=1
                )
                fetching = runs and ledger.fetching(conn, runs[0].run_id)
                conn.commit()
                if fetching:
                    proc.send_signal(signal.SIGKILL)
                    outcome = f"SIGKILLed run {runs[0].run_id[:8]} mid-fetch"
                    break
                time.sleep(0.05)
        proc.wait(timeout=30)
        httpx.delete(f"{self.emulator}/_emulator/faults").raise_for_status()
        self.tally.events.append(f"run worker: {outcome}")

    # ------------------------------------------------------------------ chaos

    def _event(self, event: Event, instance: dg.DagsterInstance) -> threading.Timer | None:
        self.log(f"EVENT {event.describe()}")
        self.tally.events.append(event.describe())
        url = self.emulator
        if event.kind == OUTAGE_START:
            fault = {"route": "polygon", "kind": "status", "status": 503, "count": 1_000_000}
            httpx.post(f"{url}/_emulator/faults", json=fault).raise_for_status()
        elif event.kind == OUTAGE_END:
            httpx.delete(f"{url}/_emulator/faults").raise_for_status()
        elif event.kind == DROP_TRADIER:
            # The user restarts the daemon with a real Polygon key and no Tradier token.
            self._export({"TRADIER_TOKEN": None, "TRADIER_BASE_URL": None})
            self.runtime = open_runtime(self._environ(), migrate_schema=False)
            setup = ensure_providers(self.runtime)
            tradier = self.runtime.environ.get("TRADIER_BASE_URL") or "not configured"
            self.tally.events.append(
                f"restart without Tradier: polygon {setup.source}; tradier {tradier}; "
                + "; ".join(setup.notes)
            )
        elif event.kind == ADD_SYMBOL:
            spec = next(s for s in self.plan.symbols if s.ticker == event.detail["ticker"])
            with self.runtime.connect() as conn:
                watchlist.add(conn, [spec.ticker], window_days=spec.window_days)
                conn.commit()
        elif event.kind == SPLIT:
            split = {
                "ticker": event.detail["ticker"],
                "execution_date": event.detail["execution_date"],
                "split_from": 1,
                "split_to": 2,
            }
            httpx.post(f"{url}/_emulator/splits", json=split).raise_for_status()
        elif event.kind == KILL_WORKER:
            self.kill_next = True
        elif event.kind == PG_RESTART:
            return threading.Timer(PG_RESTART_DELAY_S, self.db.restart)
        return None


def _requests(result: object) -> list[dg.RunRequest]:
    if isinstance(result, dg.RunRequest):
        return [result]
    if isinstance(result, dg.SensorResult):
        return list(result.run_requests or [])
    if isinstance(result, list):
        return [r for r in result if isinstance(r, dg.RunRequest)]
    return []


def _apply_partitions(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """Dynamic partition requests, applied as the daemon applies them."""
    for request in result.dynamic_partitions_requests or []:
        keys = list(request.partition_keys)
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            known = set(instance.get_dynamic_partitions(request.partitions_def_name))
            missing = [k for k in keys if k not in known]
            if missing:
                instance.add_dynamic_partitions(request.partitions_def_name, missing)
        else:
            for key in keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def _iso(at: datetime) -> str:
    return at.isoformat()

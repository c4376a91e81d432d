"""The UI bench's world: a scratch PostgreSQL with the project's schema and Dagster instance,
and `swiftbolt dev --no-daemon` (the Dagster webserver on this code location, no sensors or
schedules to change the seeded state) serving it on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.defs.partitions import day_partitions
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.storage.migrate import migrate

from .env import BENCH_NOW, scratch_database, two_years_before

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


@dataclass
class UiWorld:
    home: Path
    environ: dict[str, str]  # what the webserver runs with
    settings: Settings
    instance: dg.DagsterInstance
    database_label: str

    @property
    def sessions(self) -> tuple[date, ...]:
        """The bar partitions' day keys, from the same definition the code location builds."""
        keys = day_partitions(self.settings).get_partition_keys()
        return tuple(date.fromisoformat(k) for k in keys)


@contextlib.contextmanager
def ui_world(now: str = BENCH_NOW, workdir: Path | None = None) -> Iterator[UiWorld]:
    """A scratch database (DATABASE_URL's server, else embedded) and instance; removed after."""
    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=workdir)))
        url, label = stack.enter_context(scratch_database(home))
        environ = {
            **os.environ,
            "DATABASE_URL": url,
            "SWIFTBOLT_HOME": str(home),
            "SWIFTBOLT_NOW": now,
            "SWIFTBOLT_HISTORY_START": two_years_before(now).isoformat(),
        }
        settings = Settings.from_env(environ)
        with psycopg.connect(url) as conn:
            migrate(conn)
        prepare_dagster_home(settings)
        instance = stack.enter_context(open_instance(settings))
        yield UiWorld(home, environ, settings, instance, label)


@dataclass
class Webserver:
    url: str
    ready_s: float
    log: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def webserver(world: UiWorld) -> Iterator[Webserver]:
    """`swiftbolt dev --no-daemon` on a free port, ready (its "Dagster UI:" line); stopped with
    SIGTERM (it stops its own children), its process group killed if that fails."""
    port = _free_port()
    log = world.home / f"webserver-{port}.log"
    beside = Path(sys.executable).parent / "swiftbolt"
    command = [str(beside) if beside.exists() else "swiftbolt", "dev", "--no-daemon"]
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            env=world.environ,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Dagster UI: " not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"swiftbolt dev exited early:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"webserver not ready in {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        yield Webserver(f"http://127.0.0.1:{port}", time.perf_counter() - started, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

"""`swiftbolt dev`: the Dagster webserver and daemon on this project's instance.

Both run as child processes, each in its own process group, so that stopping a group also stops
what they start (code servers, run workers). `dagster dev` run in the background ignores SIGINT
and SIGTERM (Dagster copies an ignored SIGINT onto SIGTERM), so this command supervises the
processes itself: SIGINT, SIGTERM or SIGHUP stops every group (SIGTERM, then SIGKILL after a
grace period) and exits 0; a process dying on its own stops the rest and exits non-zero. The
embedded PostgreSQL and the built-in emulator live in this process and stop when it exits
normally (atexit); the children get their addresses in their environment (run workers inherit
the daemon's).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import click
import httpx

from swiftbolt_pipeline.cli.runtime import fail
from swiftbolt_pipeline.services.instance import (
    dagster_environment,
    open_instance,
    prepare_dagster_home,
)
from swiftbolt_pipeline.services.launch import configure_pools
from swiftbolt_pipeline.services.runtime import ensure_providers, open_runtime
from swiftbolt_pipeline.storage.database import redact

CODE_LOCATION = "swiftbolt_pipeline.definitions"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 10.0
POLL_S = 0.25


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


class StopRequest:
    """Remembers the first stop signal; the handler only sets a field (nothing that locks)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Webserver address.")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-daemon", is_flag=True, help="Webserver only: no schedules, sensors or queue.")
def dev(host: str, port: int, no_daemon: bool) -> None:
    """Dagster webserver and daemon on this instance; SIGINT or SIGTERM stops them all."""
    # Handlers first: they also make the children start with default SIGINT/SIGTERM handling
    # even when this process was started with them ignored (a background job).
    stop = StopRequest()
    _check_port_free(host, port)
    runtime = open_runtime()
    setup = ensure_providers(runtime)
    home = prepare_dagster_home(runtime.settings)
    # Pool limits live in Dagster's storage (its tables exist: prepare_dagster_home made them).
    with open_instance(runtime.settings) as instance:
        configure_pools(instance)
    click.echo(f"database: {redact(runtime.database_url)}", err=True)
    click.echo(f"bars from: {setup.source}", err=True)
    for note in setup.notes:
        click.echo(note, err=True)
    click.echo(f"DAGSTER_HOME: {home}", err=True)

    location = ["-m", CODE_LOCATION]
    commands = [
        ("dagster-webserver", ["-h", host, "-p", str(port), *location]),
        *([] if no_daemon else [("dagster-daemon", ["run", *location])]),
    ]
    env = {**runtime.child_environ(), **dagster_environment(runtime.settings)}
    children: list[Child] = []
    try:
        for name, args in commands:
            if stop.signum is None:
                children.append(_spawn(name, args, env))
        failure = _supervise(children, stop, host, port)
    finally:
        _stop_all(children)
    if failure:
        fail("DAGSTER_PROCESS_EXITED", f"{failure}; stopped the other Dagster processes")
    click.echo("stopped", err=True)


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        fail("DAGSTER_NOT_INSTALLED", f"cannot find `{name}` next to {sys.executable} or on PATH")
        raise AssertionError  # unreachable: fail() exits
    return found


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    proc = subprocess.Popen(
        [_executable(name), *args], stdin=subprocess.DEVNULL, start_new_session=True, env=env
    )
    return Child(name, proc)


def _supervise(children: list[Child], stop: StopRequest, host: str, port: int) -> str | None:
    """Wait for a stop signal (None) or a child's death (its description)."""
    started = time.monotonic()
    ready = False
    while stop.signum is None:
        for child in children:
            code = child.proc.poll()
            if code is not None:
                return f"{child.name} exited unexpectedly with code {code}"
        if not ready and children and _answers(host, port):
            ready = True
            click.echo(
                f"Dagster UI: {_url(host, port)} (ready after {time.monotonic() - started:.1f} s;"
                " Ctrl-C or SIGTERM stops it)"
            )
        time.sleep(POLL_S)
    click.echo(f"received {signal.Signals(stop.signum).name}, stopping Dagster...", err=True)
    return None


def _stop_all(children: list[Child]) -> None:
    """SIGTERM every child's process group, wait for the groups to empty, then SIGKILL."""
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while any(_group_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        if _group_alive(child):
            click.echo(f"{child.name} did not stop within {GRACE_S:.0f} s, killing it", err=True)
            _signal_group(child, signal.SIGKILL)
    for child in children:
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            click.echo(f"{child.name} (pid {child.proc.pid}) is still running", err=True)


def _signal_group(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.proc.pid, sig)


def _group_alive(child: Child) -> bool:
    child.proc.poll()  # reap the leader, so a zombie does not count
    try:
        os.killpg(child.proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            fail("PORT_IN_USE", f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _local_host(host: str) -> str:
    """Where to reach the webserver from this machine."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def _url(host: str, port: int) -> str:
    local = _local_host(host)
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


def _answers(host: str, port: int) -> bool:
    try:
        return httpx.get(f"{_url(host, port)}/server_info", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False

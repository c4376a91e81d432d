"""`swiftbolt dev` end to end: the installed command starts the Dagster webserver and daemon,
serves the asset graph, and a signal to it alone stops every process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from swiftbolt_pipeline_tests.e2e.cli_runner import PASSTHROUGH, SWIFTBOLT

READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20


@dataclass
class DevServer:
    proc: subprocess.Popen[bytes]
    port: int
    dagster_home: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def started(self) -> list[psutil.Process]:
        """Every live process this run started: its descendants, plus anything (an orphan)
        carrying its DAGSTER_HOME in the environment."""
        found = {p.pid: p for p in _descendants(self.proc.pid)}
        for proc in psutil.process_iter():
            if proc.pid in (os.getpid(), self.proc.pid) or proc.pid in found:
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("DAGSTER_HOME") == str(self.dagster_home):
                    found[proc.pid] = proc
        return list(found.values())

    def graphql(self, query: str) -> dict:
        response = httpx.post(f"{self.url}/graphql", json={"query": query}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def dev_server(env: dict[str, str], tmp_path: Path) -> Iterator[DevServer]:
    """`swiftbolt dev --port P` in its own session, ready; killed with all it started after."""
    port = _free_port()
    full_env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    full_env.update(env)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SWIFTBOLT, "dev", "--port", str(port)],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DevServer(proc, port, Path(env["SWIFTBOLT_HOME"]) / "dagster", log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "Dagster UI: " not in server.output():
            assert proc.poll() is None, f"swiftbolt dev exited early:\n{server.output()}"
            assert time.monotonic() < deadline, f"webserver not ready:\n{server.output()}"
            time.sleep(0.2)
        assert f"Dagster UI: {server.url} " in server.output()
        yield server
    finally:
        leftovers = server.started()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for child in leftovers:
            with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
                child.kill()


def _stop_and_check(server: DevServer, sig: signal.Signals) -> None:
    """Signal `swiftbolt dev` alone; it exits 0 in time and leaves nothing running."""
    started = server.started()
    names = " ".join(" ".join(p.cmdline()) for p in started)
    assert "dagster-webserver" in names and "dagster-daemon" in names, names
    assert "dagster api grpc" in names, names  # the code servers they started

    began = time.monotonic()
    server.proc.send_signal(sig)
    code = server.proc.wait(STOP_TIMEOUT_S)
    took = time.monotonic() - began
    assert code == 0, server.output()
    assert f"received {sig.name}, stopping Dagster" in server.output()
    assert took < STOP_TIMEOUT_S

    _, alive = psutil.wait_procs(started, timeout=5)
    assert not alive, [p.cmdline() for p in alive]
    assert not server.started()
    assert not _listening(server.port)


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


ASSET_GRAPH = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
DAEMON_HEALTH = (
    "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy lastHeartbeatTime } } } }"
)


def test_dev_serves_the_asset_graph_and_sigterm_stops_everything(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    with dev_server(pipeline_env, tmp_path) as server:
        nodes = server.graphql(ASSET_GRAPH)["assetNodes"]
        deps = {
            "/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]}
            for n in nodes
        }
        assert {"m15_bars", "h1_bars", "h4_bars", "d1_bars"} <= deps.keys()
        assert "m15_bars" in deps["h1_bars"]

        # Heartbeats from this run's daemon, not from an earlier one on the same database.
        since = psutil.Process(server.proc.pid).create_time()

        def healthy() -> set[str]:
            health = server.graphql(DAEMON_HEALTH)["instance"]["daemonHealth"]
            return {
                d["daemonType"]
                for d in health["allDaemonStatuses"]
                if d["healthy"] and (d["lastHeartbeatTime"] or 0) >= since
            }

        began = time.monotonic()
        _wait_for(
            "fresh scheduler and sensor heartbeats",
            lambda: {"SCHEDULER", "SENSOR"} <= healthy(),
            60,
        )
        print(f"daemons healthy {time.monotonic() - began:.1f} s after the webserver")
        _stop_and_check(server, signal.SIGTERM)


@pytest.mark.slow  # a whole `swiftbolt dev` start and stop; CI's slow suite runs it
def test_sigint_stops_everything(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    with dev_server(pipeline_env, tmp_path) as server:
        _wait_for(  # the daemon's code server is up too, so the whole tree is checked
            "both code servers",
            lambda: sum("dagster api grpc" in " ".join(p.cmdline()) for p in server.started()) >= 2,
            timeout=60,
        )
        _stop_and_check(server, signal.SIGINT)


@pytest.mark.slow  # a whole `swiftbolt dev` start and stop; CI's slow suite runs it
def test_embedded_database_stops_with_dev(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in pipeline_env.items() if k != "DATABASE_URL"}
    env["SWIFTBOLT_HOME"] = str(tmp_path / "embedded")
    with dev_server(env, tmp_path) as server:
        pid_file = tmp_path / "embedded" / "pgdata" / "postmaster.pid"
        assert pid_file.exists()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(STOP_TIMEOUT_S) == 0, server.output()
        assert not pid_file.exists()
        assert not server.started()
        assert not _listening(server.port)


@pytest.mark.slow  # a whole `swiftbolt dev` start and stop; CI's slow suite runs it
def test_a_dying_child_stops_the_rest(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    with dev_server(pipeline_env, tmp_path) as server:
        daemon = next(
            p for p in _descendants(server.proc.pid) if "dagster-daemon" in " ".join(p.cmdline())
        )
        started = server.started()
        os.killpg(daemon.pid, signal.SIGKILL)
        code = server.proc.wait(STOP_TIMEOUT_S)
        assert code != 0
        assert "dagster-daemon exited unexpectedly" in server.output()
        _, alive = psutil.wait_procs(started, timeout=5)
        assert not alive, [p.cmdline() for p in alive]
        assert not _listening(server.port)

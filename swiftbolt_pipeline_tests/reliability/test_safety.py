"""Limits and safety: loopback-only listeners by default, and the provider key never written
anywhere — output, logs, ledger, Dagster's event log and run storage, files under
SWIFTBOLT_HOME. (Injection-like tickers: test_bad_input.py and e2e/test_cli_backfill.py.)"""

from __future__ import annotations

import inspect
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import sql

from swiftbolt_pipeline.cli import dev as dev_module
from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline.emulator import server as emulator_server
from swiftbolt_pipeline_tests.e2e.cli_runner import SWIFTBOLT
from swiftbolt_pipeline_tests.reliability.helpers import cli_env, inject, invoke

pytestmark = pytest.mark.reliability

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """`swiftbolt dev` installs stop-signal handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in dev_module.STOP_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_listeners_default_to_loopback_in_help_and_code() -> None:
    for command in (["emulator"], ["dev"], ["serve"]):
        result = invoke([*command, "--help"], {})
        assert result.returncode == 0, result.stderr
        assert "[default: 127.0.0.1]" in " ".join(result.stdout.split()), result.stdout
    for function in (emulator_server.run, emulator_server.running_emulator):
        assert inspect.signature(function).parameters["host"].default == LOOPBACK


def test_the_emulator_process_listens_on_loopback_only() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [SWIFTBOLT, "emulator", "--port", str(port)],
        env=cli_env({}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        listening: list[Any] = []
        while not listening:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the emulator never listened"
            time.sleep(0.1)
            listening = [
                c
                for c in psutil.Process(proc.pid).net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            ]
        assert {(c.laddr.ip, c.laddr.port) for c in listening} == {(LOOPBACK, port)}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_dev_starts_the_webserver_on_loopback_by_default(
    pipeline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, keep_signal_handlers: None
) -> None:
    """The host the Dagster webserver is actually started with (the child is replaced by one
    that exits at once, so nothing binds)."""
    spawned: list[tuple[str, list[str]]] = []

    def spawn(name: str, args: list[str], env: dict[str, str]) -> dev_module.Child:
        spawned.append((name, args))
        return dev_module.Child(name, subprocess.Popen(["true"]))

    monkeypatch.setattr(dev_module, "_spawn", spawn)
    result = invoke(["dev", "--port", str(_free_port()), "--no-daemon"], pipeline_env)
    assert "DAGSTER_PROCESS_EXITED" in result.stderr, result.stderr
    ((name, args),) = spawned
    assert name == "dagster-webserver"
    assert args[args.index("-h") + 1] == LOOPBACK


def test_serve_binds_loopback_by_default(
    pipeline_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: dict[str, Any] = {}
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: bound.update(kw))
    result = invoke(["serve"], pipeline_env)
    assert result.returncode == 0, result.stderr
    assert bound["host"] == LOOPBACK


CANARY = "sk-CANARY-5e1f0c7a9b"
WRONG_CANARY = "sk-WRONG-CANARY-33aa"


def _database_text(conn: psycopg.Connection) -> str:
    """Every row of the ledger and of Dagster's run/event storage, as text."""
    tables = [("public", "job_runs"), ("public", "provider_checkpoints")]
    tables += conn.execute(
        """SELECT table_schema, table_name FROM information_schema.tables
           WHERE table_schema = 'dagster' AND table_type = 'BASE TABLE'"""
    ).fetchall()
    parts = []
    for schema, table in tables:
        query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table))
        rows = conn.execute(query).fetchall()
        parts.extend(r[0] for r in rows)
    conn.commit()
    return "\n".join(parts)


def test_the_api_key_is_never_written_anywhere(
    pipeline_env: dict[str, str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    """A verbose backfill that retries, succeeds, fails (unknown ticker) and fetches today
    from Tradier, and another rejected with a wrong key: the key is in none of the output,
    the ledger, Dagster's storage or any file under SWIFTBOLT_HOME."""
    settings = EmulatorSettings(api_key=CANARY)
    with running_emulator(settings) as url:
        env = {
            **pipeline_env,
            "POLYGON_API_KEY": CANARY,
            "POLYGON_BASE_URL": url,
            "TRADIER_TOKEN": CANARY,
            "TRADIER_BASE_URL": url,
        }
        inject(url, {"route": "polygon", "kind": "status", "status": 503})
        args = ["backfill", "--symbols", "SPY,ZZZZ", "--start", "2026-03-18", "--end", "2026-03-20"]
        verbose = subprocess.run(
            [SWIFTBOLT, "-v", *args],
            env=cli_env(env),
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
        rejected = invoke(args, {**env, "POLYGON_API_KEY": WRONG_CANARY})
    output = verbose.stdout + verbose.stderr
    assert verbose.returncode == 1, output  # ZZZZ failed, SPY succeeded
    assert "retry 1/4" in output and "SYMBOL_NOT_FOUND" in output and "tradier" in output
    assert "AUTH_FAILED" in rejected.stderr
    stored = _database_text(conn)
    assert "SYMBOL_NOT_FOUND" in stored and "AUTH_FAILED" in stored  # the errors are there...
    files = [p for p in Path(pipeline_env["SWIFTBOLT_HOME"]).rglob("*") if p.is_file()]
    assert files
    for key in (CANARY, WRONG_CANARY):  # ...the keys are not
        assert key not in output
        assert key not in rejected.stdout + rejected.stderr
        assert key not in stored
        leaks = [p for p in files if key.encode() in p.read_bytes()]
        assert leaks == []

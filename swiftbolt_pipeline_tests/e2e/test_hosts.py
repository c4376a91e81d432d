"""Several machines for real: two worker hosts (network namespaces, each with its own address,
reaching PostgreSQL, RabbitMQ, Redis and the emulator only through the network) execute the
steps of a `swiftbolt backfill` run with SWIFTBOLT_EXECUTOR=celery. One host is killed
(SIGKILL to every process in it) while it fetches; its step goes back to the broker's queue
and the survivor runs it. Every bar is then stored exactly once, as the emulator's own data
says (computed here without the pipeline), and the token bucket shared through PostgreSQL
kept both hosts under the provider's limit."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import date
from pathlib import Path

import httpx
import polars as pl
import psycopg
import pytest

from swiftbolt_pipeline.bench import netns
from swiftbolt_pipeline.core.calendar import sessions_between
from swiftbolt_pipeline.emulator.data import BarStore
from swiftbolt_pipeline.soak import truth
from swiftbolt_pipeline.storage.audit import stored_bars
from swiftbolt_pipeline_tests.e2e.cli_runner import PASSTHROUGH, SWIFTBOLT, run_cli
from swiftbolt_pipeline_tests.reliability.helpers import tight_polygon_budget

SYMBOLS = ["AAPL", "MSFT", "NVDA", "QQQ"]
FIRST, LAST = date(2026, 3, 2), date(2026, 3, 6)
LATENCY_S = 5.0  # every Polygon request: the provider, not the workers, sets the pace
BROKER = "amqp://guest:guest@127.0.0.1:5672/{vhost}"
BACKEND = "redis://127.0.0.1:6379/0"
FETCH_STEP = "m15_bars.m15_polygon"

pytestmark = pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))


def _executions(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(run id, step key, event text) of every step a Celery worker started, in order. The
    event names the worker (`<host>@<hostname>`)."""
    rows = conn.execute(
        """SELECT run_id, step_key, event FROM dagster.event_logs
           WHERE dagster_event_type = 'ENGINE_EVENT' AND event LIKE '%%in celery worker%%'
           ORDER BY id"""
    ).fetchall()
    conn.commit()
    return [(r, s, e) for r, s, e in rows]


def _succeeded(conn: psycopg.Connection, run_id: str, step_key: str) -> bool:
    row = conn.execute(
        """SELECT 1 FROM dagster.event_logs WHERE run_id = %s AND step_key = %s
           AND dagster_event_type = 'STEP_SUCCESS'""",
        (run_id, step_key),
    ).fetchone()
    conn.commit()
    return row is not None


def _on(host: netns.Host, event: str) -> bool:
    return f"{host.name}@" in event


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_host_s_steps_finish_on_the_survivor(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str, tmp_path: Path
) -> None:
    ports = [
        netns.url_port(pipeline_env["DATABASE_URL"], 5432),
        5672,
        6379,
        netns.url_port(emulator, 80),
    ]
    # Two hosts with a bucket each would get 429s from this provider.
    with tight_polygon_budget(emulator, conn) as stats:
        httpx.post(
            f"{emulator}/_emulator/faults",
            json={"route": "polygon", "kind": "delay", "seconds": LATENCY_S, "count": 1000},
        ).raise_for_status()
        with netns.rabbitmq_vhost("swiftbolt-test") as vhost, netns.hosts(2, ports) as hosts:
            env = {
                **{k: os.environ[k] for k in PASSTHROUGH if k in os.environ},
                **pipeline_env,
                "SWIFTBOLT_EXECUTOR": "celery",
                "SWIFTBOLT_CELERY_BROKER": BROKER.format(vhost=vhost),
                "SWIFTBOLT_CELERY_BACKEND": BACKEND,
            }
            migrated = run_cli("db", "migrate", env=env)
            assert migrated.returncode == 0, migrated.stderr
            logs = [tmp_path / f"{host.name}.log" for host in hosts]
            for host, log in zip(hosts, logs, strict=True):
                host.start_worker(netns.worker_env(env, host, home=tmp_path / host.name), log)
            for log in logs:
                netns.wait_for(lambda log=log: "ready." in log.read_text(), 120, f"{log.name}")
            doomed, survivor = hosts
            backfill = subprocess.Popen(
                [SWIFTBOLT, "backfill", "--symbols", ",".join(SYMBOLS),
                 "--start", FIRST.isoformat(), "--end", LAST.isoformat(),
                 # The session-partitioned assets the workers run (the daily years' one
                 # request per symbol runs in the launching process).
                 "--timeframes", "m15,h1,h4"],
                env={**env, "COLUMNS": "120"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            try:
                netns.wait_for(
                    lambda: any(
                        step == FETCH_STEP and _on(doomed, event)
                        for _, step, event in _executions(conn)
                    ),
                    300,
                    f"{doomed.name} to start fetching",
                )
                # Mid-request (each takes LATENCY_S): the whole machine goes.
                time.sleep(1.0)
                doomed.kill()
                killed = [
                    (run, step)
                    for run, step, event in _executions(conn)
                    if _on(doomed, event) and step == FETCH_STEP and not _succeeded(conn, run, step)
                ]
                assert killed, "the host finished its fetch before it was killed"
                out, err = backfill.communicate(timeout=420)
            finally:
                if backfill.poll() is None:
                    backfill.kill()
                    backfill.communicate()
            worker_output = "\n".join(log.read_text() for log in logs)

    assert backfill.returncode == 0, err[-3000:]
    assert f"{len(SYMBOLS)} run(s)" in err, err[-3000:]
    # The killed fetch ran again, on the survivor, and its run succeeded.
    executions = _executions(conn)
    for run, step in killed:
        assert any(r == run and s == step and _on(survivor, e) for r, s, e in executions), (
            run,
            step,
        )
    statuses = conn.execute("SELECT status FROM dagster.runs").fetchall()
    assert [s for (s,) in statuses] == ["SUCCESS"] * len(SYMBOLS)
    # Both hosts worked before one was lost.
    assert all(any(_on(host, e) for _, _, e in executions) for host in hosts)
    # Every bar exactly once, as the emulator's own data says.
    store, days = BarStore(), sessions_between(FIRST, LAST)
    for symbol in SYMBOLS:
        want = truth.session_truth(store, symbol, days, truth.Facts())
        have = stored_bars(conn, symbol)
        conn.commit()
        for tf in truth.TIMEFRAMES:
            got = have.filter(pl.col("timeframe") == tf)
            expected = want[tf]
            assert got.height == expected.height, (symbol, tf, got.height, expected.height)
            joined = expected.join(got, on="ts_ms", how="inner", suffix="_db")
            assert joined.height == expected.height, (symbol, tf, "bars at the wrong times")
            for column in ("open", "high", "low", "close"):
                diff = (joined[column] - joined[f"{column}_db"]).abs().max()
                assert isinstance(diff, float) and diff < 1e-6, (symbol, tf, column, diff)
            assert (joined["volume"] == joined["volume_db"]).all(), (symbol, tf)
    # One shared budget: no 429 although two hosts fetched at once.
    assert stats["rejected_429"]["polygon"] == 0
    # The broker's password never shows in what the hosts print.
    assert "guest:guest" not in worker_output + out + err

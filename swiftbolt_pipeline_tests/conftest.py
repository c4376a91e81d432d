"""Shared fixtures: a real PostgreSQL (DATABASE_URL's server, else embedded) and the emulator.

Never a mocked database: with DATABASE_URL set, each test session gets a fresh database on
that server; without it, an embedded PostgreSQL starts under a temporary directory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.migrate import migrate

EMULATOR_KEY = "test-key"
# Tests run with the clock pinned after the real data (which ends 2026-03-12), and a
# history window that covers it.
TEST_NOW = "2026-03-20T12:00:00-04:00"
TEST_HISTORY_START = "2024-03-20"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = os.environ.get("DATABASE_URL")
    if not server:
        home = tmp_path_factory.mktemp("pg")
        url = database.start_embedded(home)
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url
        return
    name = f"swiftbolt_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server, name)
    with psycopg.connect(url) as conn:
        migrate(conn)
    try:
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


RESET_SQL = """
TRUNCATE ohlc_bars_v2, confirmed_sessions, job_runs, provider_checkpoints, rate_grants,
         corporate_actions, corporate_action_checks, dividends, alerts, universe_members,
         universes;
-- Runs a test left behind (e.g. a backfill killed with SIGKILL stays STARTED) would count as
-- "in flight" for the next test's coverage and sensors.
DO $$ BEGIN
    IF to_regclass('dagster.runs') IS NOT NULL THEN
        TRUNCATE dagster.runs CASCADE;
    END IF;
    -- ...and so would an unfinished backfill.
    IF to_regclass('dagster.bulk_actions') IS NOT NULL THEN
        TRUNCATE dagster.bulk_actions CASCADE;
    END IF;
    -- ...and the pool slots those runs held (a killed run never releases its own).
    IF to_regclass('dagster.concurrency_slots') IS NOT NULL THEN
        UPDATE dagster.concurrency_slots SET run_id = NULL, step_key = NULL
         WHERE run_id IS NOT NULL;
        DELETE FROM dagster.pending_steps;
    END IF;
END $$;
UPDATE provider_breakers SET state = 'closed', consecutive_failures = 0, opened_at = NULL,
       probe_started_at = NULL;
DELETE FROM symbols;
UPDATE rate_buckets SET capacity = 1000, refill_per_min = 1000, tokens = 1000, window_s = 61,
       updated_at = clock_timestamp();
"""


@pytest.fixture
def db_url(database_url: str) -> str:
    """The test database, emptied, with generous rate limits (tests that test limits set them)."""
    with psycopg.connect(database_url) as conn:
        conn.execute(RESET_SQL)
    return database_url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url) as connection:
        yield connection


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    with running_emulator(EmulatorSettings(api_key=EMULATOR_KEY)) as url:
        yield url


@pytest.fixture
def pipeline_env(
    monkeypatch: pytest.MonkeyPatch, db_url: str, emulator: str, tmp_path: Path
) -> dict[str, str]:
    """Environment for the pipeline: test database, emulator, pinned clock."""
    env = {
        "DATABASE_URL": db_url,
        "POLYGON_API_KEY": EMULATOR_KEY,
        "POLYGON_BASE_URL": emulator,
        "TRADIER_TOKEN": EMULATOR_KEY,
        "TRADIER_BASE_URL": emulator,
        "ALPACA_KEY_ID": EMULATOR_KEY,
        "ALPACA_SECRET_KEY": EMULATOR_KEY,
        "ALPACA_BASE_URL": emulator,
        "SWIFTBOLT_HOME": str(tmp_path / "home"),
        "SWIFTBOLT_NOW": TEST_NOW,
        "SWIFTBOLT_HISTORY_START": TEST_HISTORY_START,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env

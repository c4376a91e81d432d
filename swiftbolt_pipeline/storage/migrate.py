"""Versioned schema migrations: numbered `.sql` files applied once each, in order.

Safe to run concurrently: an advisory lock serializes migrators, and each file is applied in
the same transaction that records it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import psycopg

MIGRATION_LOCK_KEY = 0x5B01_7001  # arbitrary, constant: "swiftbolt migrations"


@contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Hold the lock migrators take, on a connection of its own, for setup beside the schema
    that must not run twice at once (Dagster's tables, pool limits)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def dagster_tables_exist(conn: psycopg.Connection) -> bool:
    """Has Dagster created its tables in the `dagster` schema yet?"""
    row = conn.execute("SELECT to_regclass('dagster.instance_info') IS NOT NULL").fetchone()
    return bool(row and row[0])


def available_migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every packaged migration, in version order."""
    folder = resources.files("swiftbolt_pipeline.storage") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply pending migrations; returns the names applied (empty when up to date)."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in available_migrations():
            if version in done:
                continue
            conn.execute(sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied.append(name)
    return applied

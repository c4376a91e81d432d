"""Throwaway databases, for the benchmark and the operations simulation."""

from __future__ import annotations

import psycopg
from psycopg import sql


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server of `admin_url`; returns the server's version."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = admin.execute("SHOW server_version").fetchone()
    return version[0] if version else "?"


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name`, closing its sessions."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

"""Which PostgreSQL to talk to: `DATABASE_URL`, or an embedded server under SWIFTBOLT_HOME.

The embedded server (pgserver, a pip-installed PostgreSQL 16) is shared by every process that
points at the same data directory; pgserver stops it when the last of them exits. The CLI passes
the URL it resolved to the processes it starts (the Dagster webserver, daemon and run workers)
as their `DATABASE_URL`; a process started without one (`dagster dev`) joins the server itself.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

EMBEDDED_DATABASE = "swiftbolt"
DAGSTER_SCHEMA = "dagster"

_embedded_servers: dict[Path, object] = {}


class DatabaseUnavailable(RuntimeError):
    """The configured PostgreSQL cannot be reached; the message is safe to show users."""


@functools.cache
def start_embedded(home: Path) -> str:
    """Start (or join) the embedded server under `home` and return a URL for our database
    (created on first start); once per process."""
    pgdata = home / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        server = get_server(pgdata, cleanup_mode="stop")
    _embedded_servers[pgdata] = server
    admin_url = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    return server.get_uri(EMBEDDED_DATABASE)


def resolve_database_url(home: Path, configured: str | None) -> str:
    """The URL to use: the configured one, else the embedded server under `home`."""
    return configured or start_embedded(home.resolve())


def redact(url: str) -> str:
    """The URL without its password (user-info or `?password=`), for messages."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    query = urlencode(
        [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*/"
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact(url)}: {reason}"
        ) from None


def sqlalchemy_url(url: str, schema: str = DAGSTER_SCHEMA) -> str:
    """A psycopg2-dialect SQLAlchemy URL for Dagster's storage, pinned to its own schema.

    dagster-postgres on SQLAlchemy 2.1 picks the psycopg 3 dialect for a bare `postgresql://`
    URL and then fails; the explicit psycopg2 driver works."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2", query=urlencode(query)))

"""Fixtures of the reliability suite.

`password_server` is a PostgreSQL of our own (pgserver, started for the session whatever
DATABASE_URL says) that really checks passwords — the shared test servers trust every local
connection, so a wrong password would pass there — and that a test may restart."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import pytest

from swiftbolt_pipeline.soak import pg

ROLE, PASSWORD = "swift", "Right-pw-4f9c"


@dataclass(frozen=True)
class PasswordServer:
    server: pg.OwnPostgres

    def url(self, password: str = PASSWORD, user: str = ROLE, database: str = pg.DATABASE) -> str:
        (socket_dir,) = parse_qs(urlsplit(self.server.admin_url).query)["host"]
        return f"postgresql://{user}:{quote(password, safe='')}@/{database}?host={socket_dir}"

    def restart(self) -> None:
        self.server.restart()


@pytest.fixture(scope="session")
def password_server() -> Iterator[PasswordServer]:
    # A short path: the socket lives in the data directory and unix socket paths are short.
    root = Path(tempfile.mkdtemp(prefix="sbpw-", dir="/tmp"))
    server = pg.start(root)
    (server.pgdata / "pg_hba.conf").write_text(
        "local all postgres trust\nlocal all all scram-sha-256\n"
    )
    with psycopg.connect(server.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f"ALTER DATABASE {pg.DATABASE} OWNER TO {ROLE}")
    try:
        yield PasswordServer(server)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

"""Fixtures of the reliability suite.

`password_server` is a PostgreSQL of our own (pgserver, started for the session whatever
DATABASE_URL says) that really checks passwords — the shared test servers trust every local
connection, so a wrong password would pass there — and that a test may restart."""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

ROLE, PASSWORD, DATABASE = "swift", "Right-pw-4f9c", "swiftbolt"


@dataclass(frozen=True)
class PasswordServer:
    pgdata: Path
    socket_dir: str
    system_user: str | None

    def url(self, password: str = PASSWORD, user: str = ROLE, database: str = DATABASE) -> str:
        return f"postgresql://{user}:{quote(password, safe='')}@/{database}?host={self.socket_dir}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        # Output to a file, not a pipe: the postmaster it starts would hold a pipe open.
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args],
            user=self.system_user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
            timeout=60,
        )

    def restart(self) -> None:
        """Stop (fast: existing connections are cut) and start again, same socket."""
        self.pg_ctl("-w", "-m", "fast", "-l", str(self.pgdata / "log"), "restart")


@pytest.fixture(scope="session")
def password_server() -> Iterator[PasswordServer]:
    # A short path: the socket lives in the data directory and unix socket paths are short.
    root = Path(tempfile.mkdtemp(prefix="sbpw-", dir="/tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs without XDG_RUNTIME_DIR
        from pgserver.postgres_server import get_server

        # No automatic cleanup: pgserver would not stop a server restarted behind its back.
        server = get_server(root / "pgdata", cleanup_mode=None)
    atexit.unregister(server._cleanup)
    info = server.get_postmaster_info()
    assert info.socket_dir is not None
    srv = PasswordServer(server.pgdata, str(info.socket_dir), server.system_user)
    (srv.pgdata / "pg_hba.conf").write_text(
        "local all postgres trust\nlocal all all scram-sha-256\n"
    )
    with psycopg.connect(srv.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_reload_conf()")
        admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    try:
        yield srv
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            srv.pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)

"""The simulation's own PostgreSQL (pgserver, under the simulation's directory), which the
chaos plan may restart: never the machine's system PostgreSQL."""

from __future__ import annotations

import atexit
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from swiftbolt_pipeline.storage import scratch

DATABASE = "swiftbolt"


@dataclass(frozen=True)
class OwnPostgres:
    pgdata: Path
    admin_url: str
    url: str
    system_user: str | None

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
        """Fast restart: every open connection is cut, the server comes back on the same socket."""
        self.pg_ctl("-w", "-m", "fast", "-l", str(self.pgdata / "log"), "restart")

    def stop(self) -> None:
        """At the end: nothing to keep, so no waiting for sessions to finish."""
        self.pg_ctl("-w", "-m", "immediate", "stop")


def start(root: Path) -> OwnPostgres:
    """Start a fresh server under `root` (keep the path short: the socket lives there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs without XDG_RUNTIME_DIR
        from pgserver.postgres_server import get_server

        # No automatic cleanup: pgserver would not stop a server restarted behind its back.
        server = get_server(root / "pgdata", cleanup_mode=None)
    atexit.unregister(server._cleanup)
    admin_url = server.get_uri()
    scratch.create_database(admin_url, DATABASE)
    return OwnPostgres(server.pgdata, admin_url, server.get_uri(DATABASE), server.system_user)

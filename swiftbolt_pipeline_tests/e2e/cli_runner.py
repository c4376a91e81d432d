"""Run the installed `swiftbolt` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SWIFTBOLT = str(Path(sys.executable).parent / "swiftbolt")
PASSTHROUGH = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_RUNTIME_DIR")


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`swiftbolt ARGS` with exactly `env` (plus PATH and friends): no inherited settings."""
    full_env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    full_env.update(env)
    full_env.setdefault("COLUMNS", "120")
    return subprocess.run(
        [SWIFTBOLT, *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

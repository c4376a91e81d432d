"""Run the emulator: blocking :func:`run` (for the CLI) and :func:`running_emulator` (tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from swiftbolt_pipeline.background_server import serving_in_thread

from .app import EmulatorSettings, create_app


def run(
    host: str = "127.0.0.1",
    port: int = 8089,
    settings: EmulatorSettings | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until interrupted. ``settings`` None: :meth:`EmulatorSettings.from_env`.

    uvicorn's access log is off by default because it would print ``apiKey`` query values;
    ``GET /_emulator/stats`` keeps a redacted request log instead.
    """
    app = create_app(settings or EmulatorSettings.from_env())
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)


@contextmanager
def running_emulator(
    settings: EmulatorSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Start the emulator in a background thread and yield its base URL ``http://HOST:PORT``.

    ``port=0`` picks a free port. ``settings`` None: :meth:`EmulatorSettings.from_env`.
    The server is shut down (and the thread joined) on exit.
    """
    app = create_app(settings or EmulatorSettings.from_env())
    with serving_in_thread(
        app, name="swiftbolt-emulator", host=host, port=port, log_level=log_level, lifespan="off"
    ) as url:
        yield url

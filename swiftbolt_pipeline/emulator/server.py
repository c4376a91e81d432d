"""Run the emulator: blocking :func:`run` (for the CLI) and :func:`running_emulator` (tests)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

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
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="off")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="swiftbolt-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError(f"emulator failed to start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)

"""An ASGI app served by uvicorn in a background thread, for the time of a `with` block (the
emulator in tests and soaks, the API under the latency bench)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn

STARTUP_TIMEOUT_S = 30.0


@contextmanager
def serving_in_thread(
    app: Any,
    *,
    name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    lifespan: Literal["auto", "on", "off"] = "auto",
) -> Iterator[str]:
    """Serve `app` and yield its base URL ``http://HOST:PORT`` (``port=0``: a free port). The
    access log stays off: it would print ``apiKey`` query values. The server is shut down and
    its thread joined on exit."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError(f"{name} failed to start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)

"""`swiftbolt serve`: the HTTP API of design §7b, on 127.0.0.1:8000 by default."""

from __future__ import annotations

import ipaddress
import os

import click
import dagster as dg

from swiftbolt_pipeline.cli.runtime import open_runtime, prepare_dagster_home
from swiftbolt_pipeline.config import Settings


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve(host: str, port: int) -> None:
    """Serve coverage, ensure-coverage and bars over HTTP (OpenAPI at /openapi.json).

    Set SWIFTBOLT_API_TOKEN to require `Authorization: Bearer <token>` on every request."""
    # Imported here so other commands don't pay for the web stack.
    import uvicorn

    from swiftbolt_pipeline.api import create_app

    runtime = open_runtime()
    prepare_dagster_home(runtime)
    token = os.environ.get("SWIFTBOLT_API_TOKEN", "").strip() or None
    if token is None and not _is_loopback(host):
        click.echo(
            f"warning: serving on {host} without SWIFTBOLT_API_TOKEN: anyone who can reach "
            "this port can read bars and change the watchlist",
            err=True,
        )
    app = create_app(
        runtime.database_url,
        instance_factory=dg.DagsterInstance.get,
        settings_factory=Settings.from_env,
        api_token=token,
    )
    click.echo(
        f"SwiftBolt API on http://{host}:{port} (OpenAPI at /openapi.json"
        f"{', bearer token required' if token else ''})",
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""`swiftbolt serve`: the HTTP API for chart apps, on 127.0.0.1:8000 by default."""

from __future__ import annotations

import functools
import ipaddress
import os

import click

from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.runtime import open_runtime


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--insecure-no-token",
    is_flag=True,
    help="Without SWIFTBOLT_API_TOKEN, also accept writes (POST /v1/ensure-coverage, which adds "
    "symbols to the watchlist and spends the providers' request budget) from any caller that "
    "can reach the port, with no credentials. Without this flag and without a token the API "
    "answers reads only. Ignored when SWIFTBOLT_API_TOKEN is set.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests whose Host header is NAME (repeatable), e.g. the name or address "
    "clients use when --host is not loopback. localhost, 127.0.0.1, [::1] and --host are always "
    "answered; any other Host gets 400 (protects against DNS rebinding).",
)
def serve(host: str, port: int, insecure_no_token: bool, allow_hosts: tuple[str, ...]) -> None:
    """Serve coverage, ensure-coverage and bars over HTTP (OpenAPI at /openapi.json).

    Set SWIFTBOLT_API_TOKEN to require `Authorization: Bearer <token>` on every request;
    without it the API is read-only (see --insecure-no-token)."""
    # Imported here so other commands don't pay for the web stack.
    import uvicorn

    from swiftbolt_pipeline.api import create_app

    runtime = open_runtime()
    prepare_dagster_home(runtime.settings)
    token = os.environ.get("SWIFTBOLT_API_TOKEN", "").strip() or None
    tokenless_writes = insecure_no_token and token is None
    if insecure_no_token and token:
        click.echo("note: --insecure-no-token is ignored: SWIFTBOLT_API_TOKEN is set", err=True)
    if token is None and not _is_loopback(host):
        click.echo(
            f"warning: serving on {host} without SWIFTBOLT_API_TOKEN: anyone who can reach "
            "this port can read bars" + (" and change the watchlist" if tokenless_writes else ""),
            err=True,
        )
    app = create_app(
        runtime.database_url,
        instance_factory=functools.partial(open_instance, runtime.settings),
        settings_factory=lambda: runtime.settings,
        api_token=token,
        tokenless_writes=tokenless_writes,
        hosts=(host, *allow_hosts),
    )
    if token:
        access = "bearer token required"
    elif tokenless_writes:
        access = "no token: anyone who can reach it may write (--insecure-no-token)"
    else:
        access = "read-only: set SWIFTBOLT_API_TOKEN to allow writes"
    click.echo(
        f"SwiftBolt API on http://{host}:{port} (OpenAPI at /openapi.json; {access})", err=True
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

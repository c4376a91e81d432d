"""What every command (and the soak, which drives them) needs before it works: settings, the
database and providers (the built-in emulator when no provider credentials are configured)."""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

from swiftbolt_pipeline.config import DEFAULT_POLYGON_BASE_URL, EMULATOR_API_KEY, Settings
from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.providers.registry import PROVIDERS
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.migrate import migrate


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    # The environment `settings` were read from, with what this command resolved (`exported`:
    # the database, the emulator), which the processes it starts must see too.
    environ: dict[str, str] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)

    def connect(self) -> psycopg.Connection:
        return database.connect(self.database_url)

    def export(self, name: str, value: str) -> None:
        self.environ[name] = value
        self.exported[name] = value

    def child_environ(self) -> dict[str, str]:
        """The environment for a process this one starts: its own (which holds the Dagster
        instance's variables) with what this command resolved."""
        return {**os.environ, **self.exported}


def open_runtime(
    environ: Mapping[str, str] | None = None, *, migrate_schema: bool = True
) -> Runtime:
    """Settings from `environ` (default: this process's environment) and the database."""
    env = dict(os.environ if environ is None else environ)
    settings = Settings.from_env(env)
    url = database.resolve_database_url(settings.home, settings.database_url)
    if migrate_schema:
        with database.connect(url) as conn:
            migrate(conn)
    runtime = Runtime(settings=settings, database_url=url, environ=env)
    runtime.export("DATABASE_URL", url)
    return runtime


# Each provider's credential variables and base-URL variable, from the registry.
PROVIDER_VARIABLES = {
    provider.value: (registration.credentials, registration.base_url_variable)
    for provider, registration in PROVIDERS.items()
}


@dataclass(frozen=True)
class ProviderSetup:
    """Where bars come from, and what the user should hear once at start."""

    source: str
    notes: tuple[str, ...] = ()


def ensure_providers(runtime: Runtime) -> ProviderSetup:
    """Make the provider settings usable.

    With real credentials for any provider, the emulator is never wired in: a provider without
    credentials is not configured and its work is skipped (today's session then waits for the
    history provider). With no credentials at all this is the demo: the built-in emulator
    starts in this process and serves every provider without a base URL, and a provider with
    a base URL (an emulator started elsewhere) gets the emulator's key. What it resolves is
    exported on `runtime`, and `runtime.settings` read again."""
    env = runtime.environ
    configured = {
        name: all(env.get(var, "").strip() for var in keys)
        for name, (keys, _) in PROVIDER_VARIABLES.items()
    }
    if any(configured.values()):
        notes = tuple(
            f"{name}: not configured (set {' and '.join(keys)}): {_SKIPPED[name]}"
            for name, (keys, _) in PROVIDER_VARIABLES.items()
            if not configured[name]
            and (name == "tradier" or name in runtime.settings.history_providers)
        )
        return ProviderSetup(runtime.settings.polygon_base_url, notes)
    if env.get("POLYGON_BASE_URL", "").strip().rstrip("/") == DEFAULT_POLYGON_BASE_URL:
        raise InvalidInput(
            "INVALID_CONFIG",
            "POLYGON_API_KEY is not set; unset POLYGON_BASE_URL to use the built-in emulator",
        )
    emulator_url: str | None = None
    for keys, url_var in PROVIDER_VARIABLES.values():
        if not env.get(url_var, "").strip():
            emulator_url = emulator_url or _start_emulator()
            runtime.export(url_var, emulator_url)
        for var in keys:
            runtime.export(var, EMULATOR_API_KEY)
    runtime.settings = Settings.from_env(env)
    if runtime.settings.polygon_base_url == emulator_url:
        return ProviderSetup(f"built-in emulator at {emulator_url} (no POLYGON_API_KEY set)")
    return ProviderSetup(f"{runtime.settings.polygon_base_url} (emulator key, no credentials set)")


_SKIPPED = {
    "polygon": "history goes to the next history provider",
    "tradier": "today's session waits for the history provider",
    "alpaca": "history goes to the next history provider",
}


def _start_emulator() -> str:
    from swiftbolt_pipeline.emulator.server import running_emulator

    stack = contextlib.ExitStack()
    base_url = stack.enter_context(running_emulator())
    atexit.register(stack.close)
    return base_url

"""The API app over the test database: a Dagster test instance, the pinned clock, and a
TestClient that runs the app's lifespan (pool and instance opened once, closed after).

The default `app` has no token and accepts writes, as `swiftbolt serve --insecure-no-token`
does; test_access.py covers the other access modes."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import dagster as dg
import pytest
from fastapi import FastAPI

from swiftbolt_pipeline.api import create_app
from swiftbolt_pipeline.config import Settings

with warnings.catch_warnings():
    # Starlette 1.x asks for `httpx2` behind its TestClient; the installed httpx works the same.
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

TOKEN = "s3cret-token-for-tests"
# Test clients send `Host: localhost` (Starlette's default, `testserver`, is not answered).
BASE_URL = "http://localhost"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def make_app(
    db_url: str,
    instance: dg.DagsterInstance | None,
    token: str | None = None,
    *,
    tokenless_writes: bool = False,
    hosts: tuple[str, ...] = (),
) -> FastAPI:
    return create_app(
        db_url,
        (lambda: contextlib.nullcontext(instance)) if instance is not None else None,
        Settings.from_env,
        token,
        tokenless_writes=tokenless_writes,
        hosts=hosts,
    )


@pytest.fixture
def app(pipeline_env: dict[str, str], instance: dg.DagsterInstance) -> FastAPI:
    return make_app(pipeline_env["DATABASE_URL"], instance, tokenless_writes=True)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as test_client:
        yield test_client

"""The API app over the test database: a Dagster test instance, the pinned clock, and a
TestClient that runs the app's lifespan (pool and instance opened once, closed after)."""

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


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def make_app(db_url: str, instance: dg.DagsterInstance | None, token: str | None = None) -> FastAPI:
    return create_app(
        db_url,
        (lambda: contextlib.nullcontext(instance)) if instance is not None else None,
        Settings.from_env,
        token,
    )


@pytest.fixture
def app(pipeline_env: dict[str, str], instance: dg.DagsterInstance) -> FastAPI:
    return make_app(pipeline_env["DATABASE_URL"], instance)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client

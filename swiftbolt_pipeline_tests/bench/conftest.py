"""Fixtures of the bench tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench builds its own world; nothing from the caller's environment may leak in
    (except DATABASE_URL, which selects the server for its scratch database)."""
    for name in list(os.environ):
        if name.startswith(("SWIFTBOLT_", "POLYGON_", "TRADIER_", "DAGSTER_")):
            monkeypatch.delenv(name)

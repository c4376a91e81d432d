from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest


@pytest.fixture
def aconn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the (reset) test database."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection

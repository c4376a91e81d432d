"""Connection helpers: password redaction, clear errors, Dagster's SQLAlchemy URL."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import sqlalchemy

from swiftbolt_pipeline.storage import database

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://alice:{SECRET}@db.example:5432/swift",
            "postgresql://alice:***@db.example:5432/swift",
        ),
        (f"postgresql://alice:{SECRET}@db.example/swift?sslmode=require",
         "postgresql://alice:***@db.example/swift?sslmode=require"),
        ("postgresql://alice@db.example/swift", "postgresql://alice@db.example/swift"),
        ("postgresql://postgres@/swift?host=/tmp/sock", "postgresql://postgres@/swift?host=/tmp/sock"),
        (f"postgresql://u:{SECRET}%40x@h/db", "postgresql://u:***@h/db"),  # percent-encoded
    ],
)  # fmt: skip
def test_redact_hides_the_password(url: str, expected: str) -> None:
    assert database.redact(url) == expected
    assert SECRET not in database.redact(url)


def test_redact_when_the_password_also_appears_in_the_user_name() -> None:
    url = "postgresql://pw:pw@h/db"
    assert database.redact(url) == "postgresql://pw:***@h/db"


def test_redact_hides_a_password_given_as_query_parameter() -> None:
    assert SECRET not in database.redact(f"postgresql://alice@db.example/swift?password={SECRET}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_to_closed_port_raises_clear_error_without_password() -> None:
    port = _closed_port()
    url = f"postgresql://alice:{SECRET}@127.0.0.1:{port}/swift"
    with pytest.raises(database.DatabaseUnavailable) as info:
        database.connect(url)
    message = str(info.value)
    assert message.startswith("cannot connect to PostgreSQL at ")
    assert f"postgresql://alice:***@127.0.0.1:{port}/swift" in message
    assert SECRET not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert len(message.splitlines()) == 1


def test_connect_works_and_honours_autocommit(database_url: str) -> None:
    with database.connect(database_url, autocommit=True) as conn:
        assert conn.autocommit is True
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with database.connect(database_url) as conn:
        assert conn.autocommit is False


def test_sqlalchemy_url_for_a_unix_socket_url() -> None:
    url = database.sqlalchemy_url("postgresql://postgres:@/swiftbolt?host=/tmp/pg dir/x")
    assert url.startswith("postgresql+psycopg2://postgres:@/swiftbolt?")
    assert url.endswith("options=-csearch_path%3Ddagster")
    query = parse_qs(urlsplit(url).query)
    assert query == {"host": ["/tmp/pg dir/x"], "options": ["-csearch_path=dagster"]}


def test_sqlalchemy_url_replaces_existing_options_and_keeps_the_rest() -> None:
    url = database.sqlalchemy_url(
        f"postgresql://u:{SECRET}@h:5433/db?sslmode=require&options=-cstatement_timeout%3D5",
        schema="other",
    )
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg2"
    assert (parts.username, parts.password, parts.hostname, parts.port, parts.path) == (
        "u", SECRET, "h", 5433, "/db",
    )  # fmt: skip
    assert parse_qs(parts.query) == {"sslmode": ["require"], "options": ["-csearch_path=other"]}


def test_sqlalchemy_url_really_connects_into_the_dagster_schema(database_url: str) -> None:
    url = database.sqlalchemy_url(database_url)
    parsed = sqlalchemy.engine.make_url(url)
    assert parsed.drivername == "postgresql+psycopg2"
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as c:
            assert c.execute(sqlalchemy.text("SHOW search_path")).scalar() == "dagster"
            assert c.execute(sqlalchemy.text("SELECT current_schema()")).scalar() == "dagster"
    finally:
        engine.dispose()
    with psycopg.connect(database_url) as conn:  # our own tables stay in public
        assert conn.execute("SELECT to_regclass('public.ohlc_bars_v2')").fetchone() != (None,)

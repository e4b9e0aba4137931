"""Fixtures shared by the whole suite: real Redis, real PostgreSQL and SQLite, the app.

Isolation rules: the suite creates its own PostgreSQL database and drops it at the end;
it claims an empty Redis database number (atomically, with a marker key) and flushes
only that one. Nothing outside what the suite created is ever flushed or dropped.

Outside CI a missing PostgreSQL or Redis skips the tests that need it, with the reason
in the summary (``-ra``). With ``CI=true`` the same absence fails the run: a green CI
must mean the tests ran against the real services.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import make_url

from models import db
from webhook_app import create_app

# The GitHub emulator's fixtures (github_emulator, sample_repository, ...) for every test.
pytest_plugins = ["github_emulator.testing"]

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_CLAIM_KEY = "project-sync:test-suite-claim"
TEST_WEBHOOK_SECRET = "test-webhook-secret"


def unavailable(reason: str) -> None:
    """Skip outside CI, fail on CI: a service the suite needs is not there."""
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: required services must be running)", pytrace=False)
    pytest.skip(reason)


# --- Redis -----------------------------------------------------------------------------

_CLAIM_IF_EMPTY = """
if redis.call('DBSIZE') == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', 86400)
  return 1
end
return 0
"""


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis database number this test session has claimed for itself.

    A database is claimed only if it is empty, atomically (a Lua script), by writing a
    marker key; parallel test sessions therefore never share or flush each other's data.
    """
    claimed: int | None = None
    token = secrets.token_hex(8)
    try:
        for number in range(15, 0, -1):
            client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{number}", socket_connect_timeout=2)
            if client.eval(_CLAIM_IF_EMPTY, 1, REDIS_CLAIM_KEY, token):
                claimed = number
                break
    except redis.ConnectionError as exc:
        unavailable(f"Redis is not reachable at {REDIS_BASE_URL}: {exc}")
    if claimed is None:
        unavailable("no empty Redis database (1-15) left to claim for tests")
    url = f"{REDIS_BASE_URL}/{claimed}"
    yield url
    client = redis.Redis.from_url(url)
    if client.get(REDIS_CLAIM_KEY) in (token.encode(), None):
        client.flushdb()


def reset_redis(url: str) -> None:
    """Empty the claimed database but keep the claim marker."""
    client = redis.Redis.from_url(url)
    marker = client.get(REDIS_CLAIM_KEY)
    client.flushdb()
    if marker is not None:
        client.set(REDIS_CLAIM_KEY, marker, ex=86400)


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database created for this test session and dropped after it."""
    import psycopg

    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"project_sync_test_{os.getpid()}_{secrets.token_hex(3)}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {admin.host}:{admin.port}: {exc}")
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- The app ---------------------------------------------------------------------------

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which database a test runs on; every app test runs on both unless it narrows this
    with ``@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)``."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'project_sync.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def empty_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Any
) -> Iterator[str]:
    """A database with nothing in it, on either backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    import psycopg

    request.getfixturevalue("postgres_url")  # skips or fails if PostgreSQL is absent
    admin = make_url(POSTGRES_ADMIN_URL)
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"project_sync_migrations_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def base_settings(database_url: str, redis_url: str, instance_path: str) -> dict[str, Any]:
    """The configuration every test app starts from."""
    return {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": "test-secret-key",
        "WEBHOOK_SECRETS": (TEST_WEBHOOK_SECRET,),
        # Suites count and break REST calls; tests/sync/test_git_transport.py runs the
        # default (git first, REST fallback) and git alone.
        "SYNC_TRANSPORT": "rest",
    }


@pytest.fixture
def app_settings(database_url: str, redis_url: str, tmp_path: Any) -> dict[str, Any]:
    """Overridable settings for the ``app`` fixture (a test module may override this)."""
    return base_settings(database_url, redis_url, str(tmp_path))


@pytest.fixture
def app(app_settings: dict[str, Any], redis_url: str) -> Iterator[Flask]:
    """A fresh app on an empty schema and an empty Redis database."""
    reset_redis(redis_url)
    application = create_app(app_settings)
    with application.app_context():
        db.create_all()
    yield application
    with application.app_context():
        db.session.remove()
        if db.engine.dialect.name == "postgresql":
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()
    reset_redis(redis_url)


@pytest.fixture
def app_context(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app

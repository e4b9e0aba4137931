"""The migrations build the schema from empty, tear it down, and match the models."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from models import db
from webhook_app import create_app

from .conftest import POSTGRES_ADMIN_URL, base_settings

EXPECTED_TABLES = {
    "installation",
    "repository",
    "project",
    "project_sync",
    "repository_file",
    "blob",
    "git_tree",
    "memory_entry",
    "webhook_delivery",
}


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


def test_upgrade_matches_models_and_downgrade_empties(
    empty_database_url: str, redis_url: str, tmp_path: Any
) -> None:
    app = create_app(base_settings(empty_database_url, redis_url, str(tmp_path)))
    with app.app_context():
        flask_migrate.upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert tables >= EXPECTED_TABLES

        with db.engine.connect() as connection:
            drift = compare_metadata(
                MigrationContext.configure(
                    connection,
                    opts={"compare_type": app.extensions["migrate"].configure_args["compare_type"]},
                ),
                db.metadata,
            )
        assert drift == [], f"models and migrations differ: {drift}"

        flask_migrate.downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()

"""The migrations build the schema from empty, tear it down, and match the models."""

from __future__ import annotations

from typing import Any

import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from models import db
from webhook_app import create_app

from .conftest import base_settings

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
    "maintenance_checkpoint",
    "redelivery_request",
}


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

"""Database and migrations, registered on the app (``init_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, current_app
from flask_migrate import Migrate
from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine

from models import db
from models.base import UTCDateTime

MIGRATIONS_DIRECTORY = str(Path(__file__).resolve().parent.parent / "migrations")
"""Alembic's folder; absolute so ``flask db`` works from any working directory."""

RECEIVER_ENGINE_EXTENSION = "project_sync_receiver_engine"
"""Where the app keeps the webhook receiver's engine (see :func:`receiver_engine`)."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the lock; web and worker processes share one file."""


def render_column_type(type_: str, obj: Any, autogen_context: Any) -> Any:
    """Write the app's column types as plain SQLAlchemy types in revisions, so a revision
    never imports application code that may change after it was written."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def compare_column_types(
    context: Any, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """UTCDateTime is stored as DateTime(timezone=True); that is not a schema change."""
    if isinstance(metadata_type, UTCDateTime) and isinstance(inspected_type, DateTime):
        return False
    return None  # Alembic's own comparison decides


migrate = Migrate(compare_type=compare_column_types, render_item=render_column_type)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # SQLite leaves foreign keys off by default, and without WAL a reader blocks the
    # writer: both matter once a web and a worker process share the file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def init_app(app: Flask) -> None:
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    # SQLAlchemy puts bound parameters in its error text ("[parameters: ...]"), which
    # reaches the logs; those are payload values and stored file contents.
    for name in ("SQLALCHEMY_ENGINE_OPTIONS", "RECEIVER_ENGINE_OPTIONS"):
        app.config[name] = {**app.config[name], "hide_parameters": True}
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIRECTORY, render_as_batch=True)
    with app.app_context():
        engine: Engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _configure_sqlite)
            # One SQLite file (or an in-memory database) must stay behind one pool;
            # only the isolation level differs for the receiver.
            receiver: Engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            receiver = create_engine(engine.url, **app.config["RECEIVER_ENGINE_OPTIONS"])
    app.extensions[RECEIVER_ENGINE_EXTENSION] = receiver


def receiver_engine(app: Flask | None = None) -> Engine:
    """The engine the webhook receiver stores deliveries with: autocommit, no pre-ping.

    Its own pool (connections open lazily, so worker processes never open one), so the
    rest of the app keeps ``pool_pre_ping``. The receiver does without it: a ping is a
    round trip on every request to guard against something that happens once per
    database restart, and the receiver instead retries its single autocommit INSERT
    once when the connection turns out to be dead (``webhook_app.webhooks._store``).
    """
    return (app or current_app).extensions[RECEIVER_ENGINE_EXTENSION]

"""Database and migrations, registered on the app (``init_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import event
from sqlalchemy.engine import Engine

from models import db

MIGRATIONS_DIRECTORY = str(Path(__file__).resolve().parent.parent / "migrations")
"""Alembic's folder; absolute so ``flask db`` works from any working directory."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for the lock; web and worker processes share one file."""

migrate = Migrate()


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
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIRECTORY, render_as_batch=True)
    with app.app_context():
        engine: Engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _configure_sqlite)

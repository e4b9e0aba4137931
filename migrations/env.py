"""Alembic environment, run through Flask-Migrate (``flask db ...``)."""

import logging
from logging.config import fileConfig
from typing import Any

from alembic import context
from flask import current_app
from sqlalchemy.engine import Connection

config = context.config
# Keep the app's own loggers alive when migrations run inside a test or the app.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def get_engine() -> Any:
    return current_app.extensions["migrate"].db.engine


def get_metadata() -> Any:
    return current_app.extensions["migrate"].db.metadata


config.set_main_option(
    "sqlalchemy.url",
    get_engine().url.render_as_string(hide_password=False).replace("%", "%%"),
)


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=get_metadata(),
        literal_binds=True,
        render_item=current_app.extensions["migrate"].configure_args.get("render_item"),
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _sqlite_foreign_keys(connection: Connection, *, on: bool) -> None:
    """Turn SQLite's foreign key enforcement on or off for this connection.

    SQLite ignores the pragma inside a transaction, so it is set between transactions
    (committed at once) and read back: a migration never runs believing it is off.
    """
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()
    state = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
    connection.commit()
    if bool(state) != on:
        raise RuntimeError(f"SQLite did not turn foreign keys {'on' if on else 'off'}")


def _sqlite_check_foreign_keys(connection: Connection) -> None:
    """Fail the migration (its transaction rolls back) if a row points at nothing."""
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchmany(10)
    if problems:
        shown = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in problems)
        raise RuntimeError(f"rows break foreign keys after migrating: {shown}")


def run_migrations_online() -> None:
    def process_revision_directives(context: Any, revision: Any, directives: Any) -> None:
        # Don't write an empty revision when nothing changed.
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)

    with get_engine().connect() as connection:
        # On SQLite, adding or dropping a constraint rebuilds the table (batch mode: copy,
        # drop, rename), and with foreign keys on, dropping the old table cascades to
        # every row that references it. SQLite's own procedure for such changes is
        # followed instead: foreign keys off for the migrations, checked before their
        # transaction commits, on again before the connection goes back to the pool.
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, on=False)
        try:
            context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    _sqlite_check_foreign_keys(connection)
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, on=True)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

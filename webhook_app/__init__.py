"""The Flask app: :func:`create_app` is the only way to build one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from flask import Flask

from sync_jobs.logs import configure_logging
from webhook_app.config import DefaultConfig, finish_settings, settings_from_environment

DOTENV_NAME = ".env"
"""The development settings file, read from (and written by /setup to) the working
directory only: a ``.env`` in a parent directory belongs to something else."""


def environment() -> dict[str, str]:
    """The process environment over ``.env`` in the working directory.

    Used by the factory and by ``gunicorn.conf.py`` (which must listen where the app
    expects to be reached), so both read the same settings.
    """
    path = Path.cwd() / DOTENV_NAME
    file_values = dotenv_values(path) if path.is_file() else {}
    return {**{k: v for k, v in file_values.items() if v is not None}, **os.environ}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from defaults plus the environment (or ``test_config`` in tests).

    A ``.env`` file in the working directory is read for development; variables set in
    the real environment win over it. Bad settings raise ``ConfigError`` naming the
    variable, before anything listens.
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_object(DefaultConfig)
    if test_config is None:
        app.config.update(settings_from_environment(environment()))
    else:
        app.config.update(test_config)
    finish_settings(app.config, app.instance_path)
    # Every process builds its app here (web, worker, maintenance, flask commands), so
    # this is where their logs become JSON.
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    _add_services(app)
    _add_web(app)
    return app


def _add_services(app: Flask) -> None:
    """The database, Redis, health, metrics and the sync commands."""
    from sync_jobs import redis_client
    from webhook_app import database

    database.init_app(app)
    redis_client.init_app(app)

    from webhook_app import health

    app.register_blueprint(health.bp)

    from webhook_app import metrics

    metrics.init_app(app)

    from webhook_app import cli

    app.cli.add_command(cli.sync_command)
    app.cli.add_command(cli.untrack_command)


def _add_web(app: Flask) -> None:
    """Webhooks, sign-in and setup, the API, pages and streams, and the maintenance
    and webhook-proxy commands."""
    from sync_jobs import maintenance, sweeper
    from webhook_app import webhooks

    app.register_blueprint(webhooks.bp)

    from webhook_app import access, auth, headers, setup

    headers.init_app(app)
    auth.init_app(app)
    access.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(setup.bp)

    from webhook_app import api, pages, sse

    app.register_blueprint(api.bp)
    app.register_blueprint(sse.bp)
    app.register_blueprint(pages.bp)
    app.cli.add_command(sweeper.cli)
    app.cli.add_command(maintenance.cli)
    from webhook_app import webhook_proxy

    app.cli.add_command(webhook_proxy.command)

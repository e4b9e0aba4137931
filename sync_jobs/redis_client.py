"""The app's Redis connection, registered on the Flask app like any other resource."""

from __future__ import annotations

from flask import Flask, current_app
from redis import Redis

from sync_jobs import keys

EXTENSION_NAME = "project_sync_redis"


def init_app(app: Flask) -> None:
    """Create the connection pool once per process; connections open lazily.

    Also names this process's keys after the app's ``REDIS_KEY_PREFIX`` for code that
    runs outside an app context (see :mod:`sync_jobs.keys`)."""
    keys.use_prefix(app.config[keys.KEY_PREFIX_SETTING])
    app.extensions[EXTENSION_NAME] = Redis.from_url(
        app.config["REDIS_URL"],
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
    )


def redis_connection(app: Flask | None = None) -> Redis:
    """The Redis client of ``app``, or of the current app."""
    return (app or current_app).extensions[EXTENSION_NAME]

"""The app's Redis connections, registered on the Flask app like any other resource.

They live in the jobs package, not with the web app that registers them
(:func:`init_app`, called by the factory), because both sides use them: the jobs for
queues, locks, markers and progress events, the web side for sessions, the queue and
event streams. Imports go one way, so the module both use sits on the lower side.

Two clients share the URL but not their socket timeout. Every ordinary command answers
in milliseconds, so :func:`redis_connection` gives up after
:data:`COMMAND_SOCKET_TIMEOUT_SECONDS` and an outage is noticed quickly. An event
stream instead sleeps in a blocking ``XREAD`` for a whole heartbeat interval
(``SSE_HEARTBEAT_SECONDS``, 15 s): on the ordinary client the socket would time out
first, and every quiet stream would end blaming Redis. :func:`stream_connection` waits
for the longest block a stream asks for plus a margin, and keeps those long-held
connections out of the ordinary pool.
"""

from __future__ import annotations

from flask import Flask, current_app
from redis import Redis

from sync_jobs import defaults, keys

EXTENSION_NAME = "project_sync_redis"
STREAM_EXTENSION_NAME = "project_sync_redis_streams"

COMMAND_SOCKET_TIMEOUT_SECONDS = 5.0
"""How long an ordinary command may take before the connection counts as broken."""

STREAM_READ_MARGIN_SECONDS = 5.0
"""How much longer than its blocking read a stream's socket waits for the answer (the
server answers an empty XREAD only when the block ends, plus network time)."""


def stream_socket_timeout() -> float:
    """Socket timeout of the stream client: a heartbeat-long block, then the margin."""
    return defaults.SSE_HEARTBEAT_SECONDS + STREAM_READ_MARGIN_SECONDS


def init_app(app: Flask) -> None:
    """Create the connection pools once per process; connections open lazily.

    Also names this process's keys after the app's ``REDIS_KEY_PREFIX`` for code that
    runs outside an app context (see :mod:`sync_jobs.keys`)."""
    keys.use_prefix(app.config[keys.KEY_PREFIX_SETTING])
    app.extensions[EXTENSION_NAME] = Redis.from_url(
        app.config["REDIS_URL"],
        socket_connect_timeout=2,
        socket_timeout=COMMAND_SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    app.extensions[STREAM_EXTENSION_NAME] = Redis.from_url(
        app.config["REDIS_URL"],
        socket_connect_timeout=2,
        socket_timeout=stream_socket_timeout(),
        health_check_interval=30,
    )


def redis_connection(app: Flask | None = None) -> Redis:
    """The Redis client of ``app``, or of the current app."""
    return (app or current_app).extensions[EXTENSION_NAME]


def stream_connection(app: Flask | None = None) -> Redis:
    """The client for blocking stream reads (see the module docstring)."""
    return (app or current_app).extensions[STREAM_EXTENSION_NAME]

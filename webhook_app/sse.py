"""Server-sent events: of one sync (``GET /api/v1/events/project-sync/<sync_id>``), and
the change streams the pages follow (:func:`change_stream`, served by ``pages``).

The stream replays the sync's Redis Stream from ``Last-Event-ID`` (or from the start),
then waits on XREAD for new events, sends a comment as a heartbeat whenever
``SSE_HEARTBEAT_SECONDS`` pass without one, and closes after the final event. State is
only in Redis and the database, so any web process can serve any sync, and a browser
reconnecting to another process continues where it stopped.

A thread of a gthread worker holds the stream, so the loop is light: one blocking
XREAD per heartbeat interval, and a database read only when a heartbeat finds nothing
new (to notice a sync that ended without a final event: its stream expired, or its
job failed for good in RQ's failure callback, which writes only the row). No database
session is open while the stream waits; each read opens and removes its own.

Blocking reads go through ``stream_connection``, whose socket timeout outlasts a whole
heartbeat interval (the ordinary client's 5 s would end every quiet stream).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from redis import Redis
from redis.exceptions import RedisError

from models import Project, ProjectSync, SyncStatus, db
from sync_jobs import defaults
from sync_jobs.changes import read_changes
from sync_jobs.progress import Phase, ProgressEvent, read_events
from sync_jobs.redis_client import stream_connection
from webhook_app.access import Access, current_access
from webhook_app.api_queries import visible_sync
from webhook_app.errors import ApiRequestError, InvalidParameterError

bp = Blueprint("sse", __name__, url_prefix="/api/v1/events")
# Who may open a stream is access.py's rule (READ): the sync's repository must be
# visible to the person, checked once when the stream opens.

STREAM_ID_START = "0-0"
"""XREAD's "from the beginning" id."""

_STREAM_ID = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
"""A Redis Stream id as a client may send it: milliseconds, then optionally a sequence."""


STOPPING = threading.Event()
"""Set once this web process is asked to stop (:func:`end_streams`)."""


def end_streams(app: Flask) -> None:
    """End every open stream of this process now, for a web process asked to stop.

    Each stream's thread sleeps in a blocking read of up to a heartbeat interval, so
    gunicorn's graceful stop would wait for them (up to its ``graceful_timeout``) on
    every deploy. Disconnecting the stream client's pool shuts its sockets down, which
    wakes each blocked read with an error the loops already answer; a loop between two
    reads sees :data:`STOPPING`. Browsers reconnect to the next process and resume at
    their ``Last-Event-ID``. Called from a signal handler: it only sets a flag and
    closes sockets.
    """
    STOPPING.set()
    stream_connection(app).connection_pool.disconnect()


def _read_ended(exc: Exception) -> bool:
    """Whether a failed read ends the stream with a "reconnect": Redis failed, or
    :func:`end_streams` closed the connection under the read (redis-py then fails
    with whatever the closed socket and buffer raise, ``ValueError`` among them)."""
    return isinstance(exc, RedisError) or STOPPING.is_set()


def _unavailable() -> str:
    if STOPPING.is_set():
        return ": this server is restarting; reconnect to continue\n\n"
    return ": events unavailable (Redis); reconnect to continue\n\n"


@bp.errorhandler(ApiRequestError)
def _api_error(error: ApiRequestError) -> ResponseReturnValue:
    return jsonify(error=error.message), error.status


def stream_id(raw: str | None) -> str:
    """``Last-Event-ID`` as a Redis Stream id; anything else is a client bug (400)."""
    if not raw:
        return STREAM_ID_START
    # ASCII digits (str.isdigit would pass "²", which Redis refuses), each part within
    # the 64 bits of a Redis Stream id.
    match = _STREAM_ID.fullmatch(raw)
    if not match or any(int(part) >= 2**64 for part in match.groups() if part):
        raise InvalidParameterError(
            f"Last-Event-ID must be a stream id like 1-0, got {raw[:40]!r}."
        )
    return raw


def format_message(kind: str, data: dict[str, Any], *, event_id: str | None) -> str:
    """One SSE message: ``id:`` (if any), ``event:`` the kind, ``data:`` JSON."""
    lines = [f"id: {event_id}"] if event_id else []
    lines += [f"event: {kind}", f"data: {json.dumps(data)}"]
    return "\n".join(lines) + "\n\n"


def format_event(event: ProgressEvent, *, event_id: str | None, sync_id: int) -> str:
    """A sync's event: ``event: progress|final``, ``data:`` the event as JSON."""
    data = {"sync_id": sync_id, **event.payload()}
    return format_message("final" if event.final else "progress", data, event_id=event_id)


def _final_status(app: Flask, sync_id: int) -> ProjectSync | None:
    """The row if the sync has ended, read in a session closed straight after."""
    with app.app_context():
        try:
            sync = db.session.get(ProjectSync, sync_id)
            if sync is None or not SyncStatus(sync.status).is_final:
                return None
            db.session.expunge(sync)
            return sync
        finally:
            db.session.remove()


def _synthetic_final(sync: ProjectSync) -> ProgressEvent:
    """A final event made from the row, for a sync whose stream has none."""
    message = sync.error or (
        f"synced {sync.head_commit_sha}" if sync.head_commit_sha else str(sync.status)
    )
    return ProgressEvent(Phase.DONE, 1, 1, message, outcome=str(sync.status))


def event_stream(app: Flask, redis: Redis, *, sync_id: int, after: str) -> Iterator[str]:
    """The body of the response; see the module docstring for when it ends."""
    yield f"retry: {defaults.SSE_RETRY_MS}\n\n"
    deadline = time.monotonic() + defaults.SSE_MAX_STREAM_SECONDS
    block_ms = max(1, int(defaults.SSE_HEARTBEAT_SECONDS * 1000))
    # Replay first without blocking and look at the row once the replay runs dry, so
    # a finished sync is answered at once; after that the row is read only when a
    # heartbeat interval passes without events.
    wait: int | None = None
    checked_row = False
    while time.monotonic() < deadline and not STOPPING.is_set():
        try:
            events = read_events(redis, sync_id=sync_id, after=after, block_ms=wait)
        except Exception as exc:
            if not _read_ended(exc):
                raise
            yield _unavailable()
            return
        for event_id, event in events:
            yield format_event(event, event_id=event_id, sync_id=sync_id)
            after = event_id
            if event.final:
                return
        if events:
            wait = None if len(events) >= 100 or not checked_row else block_ms
            continue
        ended = _final_status(app, sync_id)
        checked_row = True
        if ended is not None:
            # The worker commits the row just before it appends the final event.
            try:
                late = read_events(
                    redis, sync_id=sync_id, after=after, block_ms=defaults.SSE_FINAL_GRACE_MS
                )
            except RedisError:
                late = []
            for event_id, event in late:
                yield format_event(event, event_id=event_id, sync_id=sync_id)
                if event.final:
                    return
            yield format_event(_synthetic_final(ended), event_id=None, sync_id=sync_id)
            return
        if wait is not None:
            yield ": heartbeat\n\n"
        wait = block_ms


@bp.get("/project-sync/<int:sync_id>")
def project_sync_events(sync_id: int) -> ResponseReturnValue:
    """Stream a sync's progress as server-sent events."""
    visible_sync(sync_id)
    after = stream_id(request.headers.get("Last-Event-ID") or request.args.get("last_event_id"))
    db.session.remove()  # nothing may hold a connection while the stream is open
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stream = event_stream(app, stream_connection(), sync_id=sync_id, after=after)
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# --- the streams pages follow -------------------------------------------------------------


class ReadableProjects:
    """Which projects a page stream's person may read, decided once per project.

    The person's :class:`~webhook_app.access.Access` is worked out when the stream opens
    (it lasts at most ``SSE_MAX_STREAM_SECONDS``; the reconnect works it out again), and
    the projects the page showed are known readable from the start; a project first seen
    in a change (a branch tracked meanwhile) is looked up once, in a session closed
    straight after.
    """

    def __init__(self, app: Flask, access: Access, *, known: Iterable[int] = ()) -> None:
        self._app = app
        self._access = access
        self._answers: dict[int, bool] = dict.fromkeys(known, True)

    def __call__(self, project_id: int) -> bool:
        if self._access.read_all:
            return True
        if project_id not in self._answers:
            self._answers[project_id] = self._look_up(project_id)
        return self._answers[project_id]

    def _look_up(self, project_id: int) -> bool:
        with self._app.app_context():
            try:
                project = db.session.get(Project, project_id)
                if project is None:
                    return False
                repository = project.repository
                installation = repository.installation
                return self._access.can_read(
                    installation_id=installation.github_id if installation else None,
                    repository_id=repository.github_id,
                )
            finally:
                db.session.remove()


def change_stream(
    redis: Redis,
    *,
    readable: Callable[[int], bool],
    project_id: int | None,
    after: str,
) -> Iterator[str]:
    """The body of a page's stream: the changes of every project (``project_id`` None)
    or of one, those the person may read, until ``SSE_MAX_STREAM_SECONDS`` pass.

    Each change is one message (``event:`` its kind, ``id:`` its stream id, ``data:`` its
    JSON); a heartbeat comment goes out whenever ``SSE_HEARTBEAT_SECONDS`` pass without
    one. The blocking read lasts one heartbeat interval, within the stream client's
    socket timeout (``stream_connection``).
    """
    yield f"retry: {defaults.SSE_RETRY_MS}\n\n"
    deadline = time.monotonic() + defaults.SSE_MAX_STREAM_SECONDS
    block_ms = max(1, int(defaults.SSE_HEARTBEAT_SECONDS * 1000))
    last_sent = time.monotonic()
    while time.monotonic() < deadline and not STOPPING.is_set():
        try:
            found = read_changes(redis, project_id=project_id, after=after, block_ms=block_ms)
        except Exception as exc:
            if not _read_ended(exc):
                raise
            yield _unavailable()
            return
        for event_id, change in found:
            after = event_id
            if readable(change.project_id):
                yield format_message(str(change.kind), change.data, event_id=event_id)
                last_sent = time.monotonic()
        if time.monotonic() - last_sent >= defaults.SSE_HEARTBEAT_SECONDS:
            yield ": heartbeat\n\n"
            last_sent = time.monotonic()


def page_stream_response(*, project_id: int | None, known: Iterable[int]) -> Response:
    """Serve :func:`change_stream` for the current person, resuming at ``Last-Event-ID``
    (sent by a reconnecting browser) or ``?after=`` (the page's render)."""
    after = stream_id(request.headers.get("Last-Event-ID") or request.args.get("after"))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    readable = ReadableProjects(app, current_access(), known=known)
    db.session.remove()  # nothing may hold a connection while the stream is open
    stream = change_stream(
        stream_connection(), readable=readable, project_id=project_id, after=after
    )
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )

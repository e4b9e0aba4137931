"""Change events: what an open page needs to follow so it never shows a stale state.

Every change a page shows is appended to two Redis Streams (keys from
:func:`sync_jobs.keys.change_events_key`): the stream of every project, which the
status page follows, and the project's own, which its project page follows. A change
has a ``kind`` and a JSON ``data`` object that always names its ``project_id``:

- ``sync``: a sync was queued (or queued again to wait for a retry): ``sync_id``,
  ``status``, ``trigger``, ``waiting_reason``;
- ``progress``: a running sync moved (``sync_id``, ``phase``, ``done``, ``total``,
  ``bytes``, ``percent``, ``message``; written by :class:`~sync_jobs.progress.ProgressPublisher`,
  at most a few a second per sync);
- ``final``: a sync ended (``outcome`` is its final status, ``status`` the same);
- ``project``: a branch was tracked, untracked or its settings changed (``change``).

The stream ids are what a page sends back as ``Last-Event-ID`` to resume. Both streams
are capped by length (approximate ``MAXLEN``); a project's stream also expires a day
after its last change. Publishing never fails the caller: pages are for people
watching, and a page that missed a change shows it on reload.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError

from sync_jobs import defaults
from sync_jobs.keys import change_events_key

log = logging.getLogger(__name__)

STREAM_START = "0-0"
"""XREAD's "from the beginning" id."""


class ChangeKind(StrEnum):
    SYNC = "sync"
    PROGRESS = "progress"
    FINAL = "final"
    PROJECT = "project"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    project_id: int
    data: dict[str, Any]


def add_change(pipe: Pipeline, kind: ChangeKind, *, project_id: int, **data: Any) -> None:
    """Queue the XADDs of one change on ``pipe`` (the caller executes it)."""
    fields = {
        "kind": str(kind),
        "project_id": str(project_id),
        "data": json.dumps({"project_id": project_id, **data}),
    }
    pipe.xadd(
        change_events_key(),
        fields,  # type: ignore[arg-type]
        maxlen=defaults.CHANGE_EVENTS_MAXLEN,
        approximate=True,
    )
    own = change_events_key(project_id)
    pipe.xadd(
        own,
        fields,  # type: ignore[arg-type]
        maxlen=defaults.PROJECT_CHANGE_EVENTS_MAXLEN,
        approximate=True,
    )
    pipe.expire(own, defaults.PROJECT_CHANGE_EVENTS_TTL_SECONDS)


def publish_change(redis: Redis, kind: ChangeKind, *, project_id: int, **data: Any) -> None:
    """Append one change to both streams; a Redis failure is logged, never raised."""
    try:
        pipe = redis.pipeline(transaction=False)
        add_change(pipe, kind, project_id=project_id, **data)
        pipe.execute()
    except RedisError as exc:
        log.warning("change of project %s not published: %s", project_id, exc)


def sync_queued(redis: Redis, sync: Any) -> None:
    """A sync row is queued (new, a restore, or waiting to run again): tell the pages."""
    publish_change(
        redis,
        ChangeKind.SYNC,
        project_id=sync.project_id,
        sync_id=sync.id,
        status=str(sync.status),
        trigger=str(sync.trigger),
        waiting_reason=sync.waiting_reason,
    )


def project_changed(redis: Redis, *, project_id: int, change: str) -> None:
    """A branch was tracked or untracked, or a project's settings changed."""
    publish_change(redis, ChangeKind.PROJECT, project_id=project_id, change=change)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_changes(
    redis: Redis,
    *,
    project_id: int | None = None,
    after: str = STREAM_START,
    count: int = 100,
    block_ms: int | None = None,
) -> list[tuple[str, Change]]:
    """Changes after stream id ``after``, oldest first (of one project, or of all).

    With ``block_ms`` the call waits that long for a change when there is none; the
    client must allow a socket timeout longer than that (``stream_connection``).
    """
    answer = redis.xread({change_events_key(project_id): after}, count=count, block=block_ms)
    changes = []
    for _key, entries in answer or []:  # type: ignore[union-attr]
        for event_id, raw in entries:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            try:
                kind, project_id = ChangeKind(fields["kind"]), int(fields["project_id"])
                change = Change(kind, project_id, json.loads(fields["data"]))
            except (KeyError, ValueError):
                log.warning("unreadable change event %s skipped", _text(event_id))
                continue
            changes.append((_text(event_id), change))
    return changes


def last_change_id(redis: Redis, *, project_id: int | None = None) -> str:
    """The id of the newest change (``0-0`` if none): a page rendered now follows on
    from it, so nothing between its render and its stream's start is missed."""
    try:
        newest = redis.xrevrange(change_events_key(project_id), count=1)
    except RedisError:
        return STREAM_START
    return _text(newest[0][0]) if newest else STREAM_START  # type: ignore[index]

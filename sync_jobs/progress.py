"""Progress events of a sync, appended to a Redis Stream per sync.

Each event has the fields ``phase``, ``done``, ``total``, ``message``; the last event of
a sync has ``phase`` = ``done`` and also ``outcome`` (the final status: succeeded,
failed or superseded) and ``final`` = ``1``. Readers (the SSE endpoint) replay a stream
from any id with :func:`read_events` and stop after the final event. Any web process
can serve any sync: the stream lives in Redis, keyed by :func:`sync_events_key`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from sync_jobs import defaults
from sync_jobs.keys import sync_events_key

log = logging.getLogger(__name__)


class Phase(StrEnum):
    RESOLVE = "resolve"
    DIFF = "diff"
    FETCH = "fetch"
    APPLY = "apply"
    RETRY = "retry"  # a retryable failure; the job will run again
    DONE = "done"  # the final event, with the outcome


@dataclass(frozen=True)
class ProgressEvent:
    phase: Phase
    done: int = 0
    total: int = 0
    message: str = ""
    outcome: str | None = None

    @property
    def final(self) -> bool:
        return self.phase is Phase.DONE

    def fields(self) -> dict[str, str]:
        body = {
            "phase": str(self.phase),
            "done": str(self.done),
            "total": str(self.total),
            "message": self.message,
        }
        if self.outcome is not None:
            body["outcome"] = self.outcome
        if self.final:
            body["final"] = "1"
        return body

    @classmethod
    def from_fields(cls, raw: dict[Any, Any]) -> ProgressEvent:
        data = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        return cls(
            Phase(data["phase"]),
            int(data.get("done", 0)),
            int(data.get("total", 0)),
            data.get("message", ""),
            data.get("outcome"),
        )


class ProgressPublisher:
    """Appends events to a sync's stream, at most every few hundred ms within a phase."""

    def __init__(self, redis: Redis, *, sync_id: int) -> None:
        self._redis = redis
        self._key = sync_events_key(sync_id)
        self._last_phase: Phase | None = None
        self._last_time = 0.0
        self.published = 0
        self._unreachable = False

    def publish(self, event: ProgressEvent, *, force: bool = False) -> str | None:
        now = time.monotonic()
        boundary = event.phase != self._last_phase or event.final or event.done == event.total
        if not (
            force or boundary or now - self._last_time >= defaults.PROGRESS_MIN_INTERVAL_SECONDS
        ):
            return None
        self._last_phase, self._last_time = event.phase, now
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(
            self._key,
            event.fields(),  # type: ignore[arg-type]
            maxlen=defaults.SYNC_EVENTS_MAXLEN,
            approximate=True,
        )
        pipe.expire(self._key, defaults.SYNC_EVENTS_TTL_SECONDS)
        try:
            event_id = pipe.execute()[0]
        except RedisError as exc:
            # Progress is for people watching; a sync never stops because Redis did.
            if not self._unreachable:
                log.warning("progress events of %s not published: %s", self._key, exc)
            self._unreachable = True
            return None
        self._unreachable = False
        self.published += 1
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)


def read_events(
    redis: Redis, *, sync_id: int, after: str = "0-0", count: int = 100, block_ms: int | None = None
) -> list[tuple[str, ProgressEvent]]:
    """Events after stream id ``after`` (``0-0``: from the start), oldest first.

    With ``block_ms`` the call waits that long for a new event when there is none, which
    is how an SSE loop sleeps between heartbeats. The id of each event is what a client
    sends back as ``Last-Event-ID``.
    """
    answer = redis.xread({sync_events_key(sync_id): after}, count=count, block=block_ms)
    events = []
    for _key, entries in answer or []:  # type: ignore[union-attr]
        for event_id, raw in entries:
            ident = event_id.decode() if isinstance(event_id, bytes) else str(event_id)
            events.append((ident, ProgressEvent.from_fields(raw)))
    return events

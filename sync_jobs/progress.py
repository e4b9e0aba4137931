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
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from sync_jobs import defaults
from sync_jobs.changes import ChangeKind, add_change
from sync_jobs.keys import sync_events_key

log = logging.getLogger(__name__)


class Phase(StrEnum):
    RESOLVE = "resolve"
    DIFF = "diff"
    FETCH = "fetch"
    APPLY = "apply"
    RETRY = "retry"  # a retryable failure; the job will run again
    DONE = "done"  # the final event, with the outcome


PHASE_WEIGHTS: dict[Phase, float] = {
    Phase.RESOLVE: 4.0,
    Phase.DIFF: 12.0,
    Phase.FETCH: 72.0,
    Phase.APPLY: 12.0,
}
"""Share of one progress bar each phase gets, from measured phase durations.

Measured on a real repository, git/git at 1a3e64c6c4 (4,847 files, 46 MiB): the first
sync of its tree 20 first-parent commits back, on the emulator with GitHub's 100 ms
latency and PostgreSQL, two runs with each transport. A phase's time is read from its
progress events' stream ids (from its first event to the next phase's first event), so
it is the time a person watching sees in that phase (the git pack arrives under the
fetch phase, though ``phase_seconds`` counts it in the resolve). Share of each sync, in %:

=========  =================  =================  ======
phase      first sync, git    first sync, rest   weight
           (2.5 / 3.4 s)      (4.7 / 6.2 s)
=========  =================  =================  ======
resolve    5.1 / 4.6          3.8 / 2.1               4
fetch      71.6 / 68.8        76.3 / 75.1            72
diff       8.6 / 10.6         12.0 / 14.9            12
apply      14.7 / 15.9        7.9 / 7.9              12
=========  =================  =================  ======

The weights follow the first sync, the one long enough for a person to watch. The
delta sync of the 20 commits (91 files) took 0.8-0.9 s over git (resolve 15 %, fetch
72 %, diff 4 %, apply 9 %), 2.3-3.4 s over REST with a tarball; at that length the bar's
exact pace matters little. Phases a sync skips leave their share to the phases still
to come (:class:`ProgressMeter`), so every bar ends at 100 %.
"""

WORK_PHASES = (Phase.RESOLVE, Phase.DIFF, Phase.FETCH, Phase.APPLY)
"""The order phases usually run in (a first sync's tarball comes before its diff)."""

UNKNOWN_TOTAL_HALFWAY = 2000
"""Within a phase whose total is unknown (a first sync's tarball: the archive says how
many files it holds only at its end), the bar reaches half the phase's share after this
many items and keeps approaching its end without reaching it."""


@dataclass(frozen=True)
class ProgressEvent:
    phase: Phase
    done: int = 0
    total: int = 0
    message: str = ""
    outcome: str | None = None
    bytes: int = 0
    percent: float | None = None

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
        if self.bytes:
            body["bytes"] = str(self.bytes)
        if self.percent is not None:
            body["percent"] = f"{self.percent:.1f}"
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
        percent = data.get("percent")
        return cls(
            Phase(data["phase"]),
            int(data.get("done", 0)),
            int(data.get("total", 0)),
            data.get("message", ""),
            data.get("outcome"),
            int(data.get("bytes", 0)),
            float(percent) if percent is not None else None,
        )

    def payload(self) -> dict[str, Any]:
        """The event as the JSON ``data`` of a server-sent event."""
        data: dict[str, Any] = {
            "phase": str(self.phase),
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "bytes": self.bytes,
            "percent": self.percent,
        }
        if self.outcome is not None:
            data["outcome"] = self.outcome
        return data


class ProgressMeter:
    """One percentage for a whole sync, across phases, never going back.

    Entering a phase gives it its weight's share of what is left of the bar, shared
    with the phases not seen yet, whatever their order (a first sync fetches before its
    diff); a phase seen again (blob calls after a pack or a tarball) gets nothing more,
    and a phase that never comes (a no-op has no fetch) leaves its share to the final
    event. Retry events keep the bar where it is; the final event puts it at 100.

    ``floor`` is where an earlier run of the same sync left the bar: a run that starts
    again (after a retry, or a job the repair pass queued again) shares out what is left
    above it, so a page's bar never goes back.
    """

    def __init__(self, weights: dict[Phase, float] | None = None, *, floor: float = 0.0) -> None:
        self._weights = weights or PHASE_WEIGHTS
        self._seen: set[Phase] = set()
        self._first: Phase | None = None
        self._phase: Phase | None = None
        self._base = 0.0
        self._span = 0.0
        self.percent = min(max(floor, 0.0), 100.0)

    def update(self, event: ProgressEvent) -> float:
        if event.final:
            self.percent = 100.0
            return self.percent
        if event.phase not in self._weights:
            return self.percent
        if event.phase != self._phase:
            self._enter(event.phase)
        fraction = phase_fraction(event.done, event.total)
        self.percent = max(self.percent, min(100.0, self._base + self._span * fraction))
        return self.percent

    def _enter(self, phase: Phase) -> None:
        self._base = self.percent
        if self._first is None:
            self._first = phase
        if phase in self._seen:
            self._span = 0.0
        else:
            # Phases before the first one seen never come (a restore starts at its diff).
            possible = WORK_PHASES[WORK_PHASES.index(self._first) :]
            remaining = [p for p in possible if p not in self._seen]
            share = sum(self._weights[p] for p in remaining)
            self._span = (100.0 - self._base) * self._weights[phase] / share if share else 0.0
        self._seen.add(phase)
        self._phase = phase


def phase_fraction(done: int, total: int) -> float:
    """How far through its phase an event is (see :data:`UNKNOWN_TOTAL_HALFWAY`)."""
    if total > 0:
        return min(1.0, max(0.0, done / total))
    return done / (done + UNKNOWN_TOTAL_HALFWAY) if done > 0 else 0.0


def human_bytes(size: int | float | None) -> str:
    """``1536`` → ``1.5 KiB``: binary units, one decimal below 10, none above."""
    if size is None:
        return "—"
    value = float(size)
    if abs(value) < 1024:
        return f"{int(value)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if abs(value) < 10 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def describe_fetch(*, files: int, total: int, size: int, source: str) -> str:
    """The fetch phase in words: ``fetching 12 of 40 files, 1.2 MiB``."""
    counted = f"{files:,} of {total:,} files" if total else f"{files:,} files so far"
    return f"{source}: {counted}, {human_bytes(size)}"


PACK_RECEIVING_HALFWAY_BYTES = 4 * 1024 * 1024
"""A git pack is streamed without a length, so how much of it has arrived is not known
until it ends: while it arrives, its receiving half of the bar reaches half way at this
many bytes and keeps approaching its end (like :data:`UNKNOWN_TOTAL_HALFWAY`)."""


def pack_progress(*, objects: int, received: int, unpacked: int | None = None) -> tuple[int, int]:
    """``(done, total)`` of a git pack's fetch, so the bar moves while it is received and
    while it is unpacked: ``total`` is twice the pack's ``objects`` (its header names
    them), receiving fills the first half (by bytes, see
    :data:`PACK_RECEIVING_HALFWAY_BYTES`), each unpacked object one step of the second.
    ``(0, 0)`` until the header has arrived."""
    if objects <= 0:
        return 0, 0
    if unpacked is not None:
        return objects + min(unpacked, objects), 2 * objects
    arrived = objects * received / (received + PACK_RECEIVING_HALFWAY_BYTES)
    return min(int(arrived), objects), 2 * objects


def describe_receiving(size: int) -> str:
    """A git pack arriving, in words: ``receiving 1.2 MiB of objects``."""
    return f"receiving {human_bytes(size)} of objects"


def describe_unpacking(done: int, total: int) -> str:
    """A git pack being read, in words: ``unpacking 300 of 1,200 objects``."""
    return f"unpacking {done:,} of {total:,} objects"


class ProgressPublisher:
    """Appends events to a sync's stream, at most every few hundred ms within a phase.

    With ``project_id`` every published event also goes to the change streams pages
    follow (:mod:`sync_jobs.changes`), with the bar's percentage from a
    :class:`ProgressMeter` that sees every event, published or not. The meter starts
    where the sync's stream left off (a run of a sync tried before goes on from the
    last percentage published, not from 0).
    """

    def __init__(self, redis: Redis, *, sync_id: int, project_id: int | None = None) -> None:
        self._redis = redis
        self._key = sync_events_key(sync_id)
        self._sync_id = sync_id
        self._project_id = project_id
        self._meter = ProgressMeter(floor=_last_percent(redis, sync_id=sync_id))
        self._last_phase: Phase | None = None
        self._last_time = 0.0
        self.published = 0
        self._unreachable = False

    def publish(self, event: ProgressEvent, *, force: bool = False) -> str | None:
        event = replace(event, percent=round(self._meter.update(event), 1))
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
        if self._project_id is not None:
            kind = ChangeKind.FINAL if event.final else ChangeKind.PROGRESS
            status = event.outcome if event.final else "running"
            add_change(
                pipe,
                kind,
                project_id=self._project_id,
                sync_id=self._sync_id,
                status=status,
                **event.payload(),
            )
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


def _last_percent(redis: Redis, *, sync_id: int) -> float:
    """Where the sync's bar stands in its stream (0 for a new one, or after a final)."""
    last = last_event(redis, sync_id=sync_id)
    if last is None or last.final or last.percent is None:
        return 0.0
    return last.percent


def last_event(redis: Redis, *, sync_id: int) -> ProgressEvent | None:
    """The newest event of a sync (a page shows a running sync's bar where it is)."""
    try:
        newest = redis.xrevrange(sync_events_key(sync_id), count=1)
    except RedisError:
        return None
    return ProgressEvent.from_fields(newest[0][1]) if newest else None  # type: ignore[index]


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

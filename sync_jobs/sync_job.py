"""The RQ entry point of a sync: the running lock and the retry policy around the engine.

:func:`run_sync` is what :func:`sync_jobs.scheduling.request_sync` enqueues. In order:

1. A sync whose row is already final does nothing (a duplicate job after success).
2. Claim the project's running lock (``sync_lock_key``) with this job's own id as the
   token, so two jobs of one sync can never both run. If another job holds it,
   postpone: enqueue the next attempt of this sync with a short delay under a new job
   id, keeping the pending marker, so later requests still coalesce into this sync.
3. Re-read the row under the lock (a duplicate job may have finished it meanwhile),
   clear the pending marker (only if it names this sync): from here on a new request
   creates a follow-up sync; since the head is read only after this point, a request
   that saw the marker is always covered by this sync.
4. Run the engine, ``sync_jobs.pipeline.execute_sync``, while a heartbeat renews the
   lock. A lock that is lost (taken over after this job was presumed dead) stops the
   sync before its apply step; the job that took over carries on.
5. Decide what a failure means (:func:`_after_failure`): a rate limit reschedules the
   sync for the reset without counting against it; GitHub, database or Redis outages
   back off up to a cap until ``SYNC_RETRY_DEADLINE_SECONDS`` after the request;
   unexpected errors get a few runs. The row always says why it waits.

RQ's own retries are not used: they cannot wait for a rate-limit reset, and a sync
whose job vanished (a killed worker, a flushed Redis) is brought back by the repair
pass (:mod:`sync_jobs.repair`) instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from rq import get_current_job
from sqlalchemy.exc import SQLAlchemyError

from models import ProjectSync, SyncStatus, db
from models.base import discard_session
from sync_jobs import changes, defaults, metrics
from sync_jobs.errors import (
    GitHubUnavailableError,
    LockLostError,
    LostRaceError,
    RateLimitedError,
)
from sync_jobs.keys import sync_job_id, sync_lock_key, sync_pending_key
from sync_jobs.logs import log_context
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import delete_if_equal, enqueue_run, syncs_queue

log = logging.getLogger(__name__)

executor: Callable[..., object] | None = None
"""Test seam: when set, called instead of ``sync_jobs.pipeline.execute_sync``.

Coalescing tests set it (in their worker process, through a worker class in
``tests/webhooks/``) to a function that records each run and reads a fake head, so the
lock protocol is exercised under a real ``rq worker`` without a GitHub. Production
leaves it ``None``.
"""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    GitHubUnavailableError,
    LostRaceError,
    SQLAlchemyError,
    RedisError,
    OSError,
)
"""Failures that clear by themselves: retried with backoff until the deadline."""


def running_lock(redis: Redis, project_id: int) -> Lock:
    """The project's running lock (redis-py's ``Lock``: token compare on extend/release)."""
    return Lock(
        redis,
        sync_lock_key(project_id),
        timeout=defaults.SYNC_LOCK_TTL_SECONDS,
        blocking=False,
        thread_local=False,
    )


def _claim(lock: Lock, token: str) -> bool:
    if lock.acquire(token=token, blocking=False):
        return True
    # The same job, rerun after its worker died, finds the lock of its first run.
    held = lock.redis.get(lock.name)
    if held == token.encode():
        lock.local.token = token.encode()
        return True
    return False


@contextmanager
def lock_heartbeat(lock: Lock, token: str) -> Iterator[threading.Event]:
    """Renew the running lock while the body runs; yield an event set if it is lost.

    A lock that vanished (Redis restarted empty) is taken again; one that another job
    holds means this job was presumed dead and replaced. A Redis outage is logged once
    and renewing goes on, since the lock may still be ours when Redis answers again.
    """
    stop = threading.Event()
    lost = threading.Event()

    def renew() -> None:
        unreachable = False
        while not stop.wait(defaults.SYNC_LOCK_RENEW_SECONDS):
            try:
                lock.extend(defaults.SYNC_LOCK_TTL_SECONDS, replace_ttl=True)
                unreachable = False
            except LockError:
                if not lock.acquire(token=token, blocking=False):
                    log.warning("running lock %s was taken over; stopping", lock.name)
                    lost.set()
                    return
                log.warning("running lock %s had vanished; taken again", lock.name)
            except RedisError as exc:
                if not unreachable:
                    log.warning("cannot renew running lock %s: %s", lock.name, exc)
                unreachable = True

    thread = threading.Thread(target=renew, name=f"lock-heartbeat-{lock.name}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join(timeout=1)


def _execute(sync_id: int, guard: Callable[[], None], *, full: bool = False) -> object:
    if executor is not None:
        return executor(sync_id)
    from sync_jobs.pipeline import execute_sync

    execute_sync(sync_id, guard=guard, full=full)
    return None


def _postpone(redis: Redis, sync: ProjectSync, postponed: int) -> str:
    """Run this sync again a little later, under the next attempt's job id.

    The job is enqueued before the row points at it, so a concurrent liveness check
    sees either this (started) job or the scheduled one, never a gap.
    """
    delays = defaults.SYNC_POSTPONE_SECONDS
    delay = delays[min(postponed, len(delays) - 1)]
    job_id = sync_job_id(sync.id)
    enqueue_run(
        syncs_queue(redis),
        sync_id=sync.id,
        job_id=job_id,
        delay_seconds=delay,
        postponed=postponed + 1,
    )
    sync.rq_job_id = job_id
    db.session.commit()
    return f"postponed {delay}s: another sync of project {sync.project_id} is running"


def current_job_id(sync_id: int) -> str:
    """This RQ job's id, or a fresh one when the sync runs outside RQ (CLI, tests)."""
    job = get_current_job()
    return job.id if job is not None else sync_job_id(sync_id)


def run_sync(sync_id: int, postponed: int = 0) -> str:
    """Run one sync under the project's running lock; see the module docstring."""
    job_id = current_job_id(sync_id)
    with log_context(sync_id=sync_id, job_id=job_id):
        sync = db.session.get(ProjectSync, sync_id)
        if sync is None:
            return f"sync {sync_id} does not exist"
        if SyncStatus(sync.status).is_final:
            return f"sync {sync_id} is already {sync.status}"
        redis = redis_connection()
        lock = running_lock(redis, sync.project_id)
        if not _claim(lock, job_id):
            return _postpone(redis, sync, postponed)
        try:
            return _run_claimed(redis, lock, sync, job_id)
        finally:
            db.session.rollback()
            # Expired, taken over or unreachable: then there is nothing of ours to free.
            with suppress(LockError, RedisError):
                lock.release()


def _run_claimed(redis: Redis, lock: Lock, sync: ProjectSync, job_id: str) -> str:
    db.session.refresh(sync)
    if SyncStatus(sync.status).is_final:
        return f"sync {sync.id} is already {sync.status}"
    delete_if_equal(redis, sync_pending_key(sync.project_id), str(sync.id))
    sync.attempts += 1
    sync.rq_job_id = job_id
    sync.retry_at = None
    sync.waiting_reason = None
    db.session.commit()
    # Read after the attempt is counted: a request joining this sync (scheduling._join:
    # making it full, forgetting its pushed head) either landed before, or saw the new
    # count and queued another sync. The pipeline reads the pushed head from this row.
    # A sync cancelled meanwhile (its project untracked) does not run.
    sync_id, full = sync.id, sync.full_requested
    if SyncStatus(sync.status).is_final:
        return f"sync {sync_id} is already {sync.status}"
    with lock_heartbeat(lock, job_id) as lost:

        def guard() -> None:
            if lost.is_set():
                raise LockLostError(f"sync {sync_id}: another job took over its running lock")

        try:
            _execute(sync_id, guard, full=full)
        except LockLostError as exc:
            log.warning("%s", exc)
            return str(exc)
        except Exception as exc:
            discard_session()
            return _after_failure(redis, sync_id, exc)
    return f"sync {sync_id} ran"


def _after_failure(redis: Redis, sync_id: int, exc: Exception) -> str:
    """Reschedule a sync that failed without a final answer, or end it failed.

    Raises when the database cannot record the decision: RQ then marks this job failed
    and the repair pass runs the sync again once the database answers.
    """
    sync = db.session.get_one(ProjectSync, sync_id)
    now = datetime.now(UTC)
    described = str(exc) or type(exc).__name__
    if isinstance(exc, RateLimitedError):
        delay = exc.retry_after_seconds + defaults.RATE_LIMIT_MARGIN_SECONDS
        until = now + timedelta(seconds=delay)
        reason = f"waiting for GitHub's rate limit until {until:%H:%M:%S} UTC"
        return _reschedule(redis, sync, delay, reason, kind="rate_limit")
    if isinstance(exc, TRANSIENT_ERRORS):
        backoff = defaults.SYNC_RETRY_BACKOFF_SECONDS
        delay = backoff[min(sync.attempts, len(backoff)) - 1]
        deadline = _as_utc(sync.queued_at) + timedelta(seconds=_deadline_seconds())
        if now + timedelta(seconds=delay) <= deadline:
            at = now + timedelta(seconds=delay)
            what = "GitHub unavailable" if isinstance(exc, GitHubUnavailableError) else described
            reason = f"{what}; next try at {at:%H:%M:%S} UTC"
            return _reschedule(redis, sync, delay, reason, kind="transient")
        return _fail(sync, f"kept failing until the retry deadline: {described}")
    if sync.attempts < defaults.SYNC_MAX_UNEXPECTED_FAILURES:
        log.exception("sync %s failed unexpectedly; it will run again", sync_id, exc_info=exc)
        delay = defaults.SYNC_RETRY_BACKOFF_SECONDS[0]
        return _reschedule(redis, sync, delay, f"failed ({described}); trying again", kind="error")
    log.error("sync %s failed %s times; giving up", sync_id, sync.attempts, exc_info=exc)
    return _fail(sync, f"failed {sync.attempts} times: {described}")


def _reschedule(redis: Redis, sync: ProjectSync, delay: float, reason: str, *, kind: str) -> str:
    """Point the row at a new job due in ``delay`` seconds, then enqueue that job.

    The row is committed first: if the enqueue fails (Redis down), the row names a job
    that does not exist, which the repair pass treats like any lost job.
    """
    job_id = sync_job_id(sync.id)
    sync.status = SyncStatus.QUEUED
    sync.rq_job_id = job_id
    sync.retry_at = datetime.now(UTC) + timedelta(seconds=delay)
    sync.waiting_reason = reason
    db.session.commit()
    metrics.record_sync_waiting(reason=kind)
    changes.sync_queued(redis, sync)  # before the job, which may run at once
    enqueue_run(syncs_queue(redis), sync_id=sync.id, job_id=job_id, delay_seconds=delay)
    log.info("sync %s rescheduled in %.0f s: %s", sync.id, delay, reason)
    return f"sync {sync.id} {reason}"


def _fail(sync: ProjectSync, message: str) -> str:
    from sync_jobs.pipeline import mark_failed

    mark_failed(sync.id, f"{message}. Start a new sync when the cause is fixed.")
    return f"sync {sync.id} failed: {message}"


def _deadline_seconds() -> float:
    from flask import current_app

    return float(
        current_app.config.get("SYNC_RETRY_DEADLINE_SECONDS", defaults.SYNC_RETRY_DEADLINE_SECONDS)
    )


def _as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

"""The RQ entry point of a sync: the running-lock protocol around the sync engine.

:func:`run_sync` is what :func:`sync_jobs.scheduling.request_sync` enqueues. In order:

1. A sync whose row is already final does nothing (a retried job after success).
2. Claim the project's running lock (``sync_lock_key``, a TTL renewed by a heartbeat
   thread, so a dead worker frees it within ``SYNC_LOCK_TTL_SECONDS``). If another
   sync holds it, postpone: enqueue the next attempt of this sync with a short delay
   under a new job id, keeping the pending marker, so later requests still coalesce
   into this sync.
3. Clear the pending marker (only if it names this sync). From here on a new request
   creates a follow-up sync; since the head is read only after this point, a request
   that saw the marker is always covered by this sync.
4. Call the engine, ``sync_jobs.pipeline.execute_sync(sync_id)``, which reads the
   branch head, sets the row's status, timings and error.
5. Release the lock in ``finally`` (only if still ours).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis
from rq.exceptions import AbandonedJobError
from rq.job import Job

from models import ProjectSync, SyncStatus, db
from sync_jobs import defaults
from sync_jobs.app_context import in_app_context
from sync_jobs.keys import sync_job_id, sync_lock_key, sync_pending_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import delete_if_equal, enqueue_run, syncs_queue

executor: Callable[[int], object] | None = None
"""Test seam: when set, called instead of ``sync_jobs.pipeline.execute_sync``.

Coalescing tests set it (in their worker process, through a worker class in
``tests/webhooks/``) to a function that records each run and reads a fake head, so the
lock protocol is exercised under a real ``rq worker`` without a GitHub. Production
leaves it ``None``.
"""

_RENEW_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _execute(sync_id: int) -> object:
    if executor is not None:
        return executor(sync_id)
    from sync_jobs.pipeline import execute_sync

    return execute_sync(sync_id)


@contextmanager
def _lock_heartbeat(redis: Redis, key: str, token: str) -> Iterator[None]:
    """Renew the running lock while the body runs; a dead process stops renewing it."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(defaults.SYNC_LOCK_RENEW_SECONDS):
            try:
                redis.eval(_RENEW_IF_EQUAL, 1, key, token, str(defaults.SYNC_LOCK_TTL_SECONDS))
            except Exception:  # a missed renewal is retried at the next beat
                continue

    thread = threading.Thread(target=renew, name=f"lock-heartbeat-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)


def _postpone(redis: Redis, sync: ProjectSync, attempt: int) -> str:
    """Run this sync again a little later, under the next attempt's job id.

    The job is enqueued before the row points at it, so a concurrent liveness check
    sees either this (started) job or the scheduled one, never a gap.
    """
    delays = defaults.SYNC_POSTPONE_SECONDS
    delay = delays[min(attempt, len(delays) - 1)]
    enqueue_run(syncs_queue(redis), sync_id=sync.id, attempt=attempt + 1, delay_seconds=delay)
    sync.rq_job_id = sync_job_id(sync.id, attempt=attempt + 1)
    db.session.commit()
    return f"postponed {delay}s: another sync of project {sync.project_id} is running"


@in_app_context
def on_run_failed(
    job: Job, connection: Redis, exc_type: type, exc: BaseException, tb: object
) -> None:
    """RQ's failure callback: record the last failure of a sync on its row.

    RQ calls it on every failure, before deciding on a retry, so ``retries_left`` still
    counts this one's retry: while any is left the sync stays ``queued`` (the engine put
    it back with the reason in ``error``) and will run again.
    """
    if job.retries_left:
        return
    sync_id = int(job.args[0])
    sync = db.session.get(ProjectSync, sync_id)
    if sync is None or SyncStatus(sync.status).is_final:
        return
    from sync_jobs.pipeline import mark_failed

    reason = "the worker running it stopped" if exc_type is AbandonedJobError else str(exc)
    mark_failed(
        sync_id,
        f"gave up after {len(defaults.SYNC_JOB_RETRY_INTERVALS_SECONDS) + 1} attempts: "
        f"{reason or exc_type.__name__}. Start a new sync when the cause is fixed.",
    )


@in_app_context
def run_sync(sync_id: int, attempt: int = 0) -> str:
    """Run one sync under the project's running lock; see the module docstring."""
    sync = db.session.get(ProjectSync, sync_id)
    if sync is None:
        return f"sync {sync_id} does not exist"
    if SyncStatus(sync.status).is_final:
        return f"sync {sync_id} is already {sync.status}"
    project_id = sync.project_id
    redis = redis_connection()
    lock_key = sync_lock_key(project_id)
    token = str(sync_id)
    claimed = redis.set(lock_key, token, nx=True, ex=defaults.SYNC_LOCK_TTL_SECONDS)
    # A retried job of this same sync may find its own lock from the attempt that died.
    if not claimed and redis.get(lock_key) != token.encode():
        return _postpone(redis, sync, attempt)
    db.session.commit()  # end the read transaction; the engine starts its own
    try:
        delete_if_equal(redis, sync_pending_key(project_id), token)
        with _lock_heartbeat(redis, lock_key, token):
            _execute(sync_id)
        return f"sync {sync_id} ran"
    finally:
        db.session.rollback()
        delete_if_equal(redis, lock_key, token)

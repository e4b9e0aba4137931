"""Requesting syncs: one sync per project at a time, bursts coalesced.

Contract shared by the receiver (which requests syncs) and the sync job (which runs
them). See DESIGN.md, "Queueing".

- :func:`request_sync` is the only way to ask for a sync. It creates a queued
  ProjectSync row and enqueues one RQ job ``sync_jobs.sync_job.run_sync(sync_id)``
  unless a sync of that project is already queued, in which case it returns that queued
  sync (the queued job reads the newest head when it starts).
- The job, when it starts, claims the project's running lock, then marks the project as
  no longer queued, then reads the branch head. A request arriving while it runs
  therefore queues exactly one follow-up. N requests in a burst cost at most two syncs.

How it is kept in Redis (keys from :mod:`sync_jobs.keys`):

- ``sync_pending_key(project)`` holds the id of the project's queued sync. It is
  written in the same MULTI/EXEC as the sync's job, so the marker and the job appear
  together. While a request creates the row it holds a short reservation
  (``reserving:<token>``, :data:`~sync_jobs.defaults.SYNC_RESERVATION_TTL_MS`);
  concurrent requests wait for it to become a sync id.
- The marker is trusted only while it is provably live: the row is still ``queued``
  and its current RQ job (``ProjectSync.rq_job_id``) is alive (:func:`run_is_alive`).
  A job that is gone (Redis lost it, TTL expired), finished, failed, stopped or
  started by a dead worker makes the marker stale; it is deleted (only if it still
  names that sync) and a new sync is created. No RQ TTL or registry maintenance is
  relied upon, and every run attempt has its own job id, so RQ's silent overwrite of
  an existing job id never comes into play.
- Pushed heads: a sync a push queued remembers the push's ``before`` and ``after``
  (:class:`PushedHead`, only when the receiver found the push newer than every one
  heard of before), so its job can fetch ``after`` at once instead of asking GitHub for
  the branch head first. The first request to join that queued sync forgets them (the
  head may have moved since), with the same guard as a request making it full, and the
  job trusts them only when ``before`` is the commit the project is synced to: a push
  delivered late, or one that another sync overtook, then costs the ordinary read of
  the branch head, never a step backwards.
- RQ's own retries are not used for syncs: the job itself reschedules a sync after a
  transient failure or a rate limit (:mod:`sync_jobs.sync_job`), and the repair pass
  (:mod:`sync_jobs.repair`) re-enqueues syncs whose job died with its worker or was
  lost with Redis.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError, WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import CursorResult, update

from models import ProjectSync, SyncStatus, SyncTrigger, db
from sync_jobs import changes, defaults
from sync_jobs.core.plan import PushedHead
from sync_jobs.errors import SyncReservationBusyError
from sync_jobs.keys import sync_job_id, sync_lock_key, sync_pending_key, syncs_queue_name
from sync_jobs.redis_client import redis_connection

RUN_SYNC = "sync_jobs.sync_job.run_sync"
"""The job function, by name, so this module does not import the sync engine."""

RESERVATION_PREFIX = "reserving:"

_LIVE_STATES = frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED})

_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def delete_if_equal(redis: Redis, key: str, value: str) -> bool:
    """Delete ``key`` only if it still holds ``value`` (never someone else's newer value).

    For the pending marker, which is not a lock, so redis-py's ``Lock`` cannot do this
    (the maintenance and sweep locks are ``Lock`` objects). The marker holds a
    reservation token and then the queued sync's id, written in the MULTI/EXEC that
    enqueues its job (:func:`_create`), read and trusted by other requests, and
    cleared by whoever finds it done or stale: the sync's job in its horse, a request
    that found its sync dead, the web app when it cancels a queued sync. None of them
    holds the ``Lock`` object that would have set it, and ``Lock.release`` compares
    only the token its own object acquired; a ``Lock`` built around a value read back
    would be a lock in name only. Redis has a compare-and-delete command (``DELEX ...
    IFEQ``) only from 8.4 and redis-py no helper for it, so it is this script, which
    runs atomically on any Redis.
    """
    return bool(redis.eval(_DELETE_IF_EQUAL, 1, key, value))


def syncs_queue(redis: Redis) -> Queue:
    return Queue(
        syncs_queue_name(), connection=redis, default_timeout=defaults.JOB_TIMEOUT_SECONDS
    )


def enqueue_run(
    queue: Queue,
    *,
    sync_id: int,
    job_id: str,
    delay_seconds: float = 0,
    postponed: int = 0,
    pipeline: object = None,
) -> Job:
    """Enqueue one run attempt of a sync under that attempt's own job id.

    Both paths take RQ's options as ``enqueue``-style keywords (``job_timeout``, not
    ``timeout``: an unknown keyword would be passed on to ``run_sync`` itself).
    ``postponed`` counts how often the sync already waited for the project's lock.
    """
    options = {
        "job_id": job_id,
        "result_ttl": defaults.RESULT_TTL_SECONDS,
        "failure_ttl": defaults.FAILURE_TTL_SECONDS,
        "job_timeout": defaults.JOB_TIMEOUT_SECONDS,
    }
    kwargs = {"postponed": postponed} if postponed else {}
    if delay_seconds > 0:
        return queue.enqueue_in(
            timedelta(seconds=delay_seconds), RUN_SYNC, args=(sync_id,), kwargs=kwargs, **options
        )
    return queue.enqueue(RUN_SYNC, args=(sync_id,), kwargs=kwargs, pipeline=pipeline, **options)


def job_is_live(
    redis: Redis,
    job_id: str | None,
    *,
    started_grace_seconds: float = defaults.SYNC_STARTED_GRACE_SECONDS,
) -> bool:
    """Whether an RQ job will still run, or is running and started recently enough that
    its worker cannot be presumed dead (RQ itself notices a dead worker's job only at
    its next registry maintenance)."""
    if job_id is None:
        return False
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status in _LIVE_STATES:
        return True
    if status == JobStatus.STARTED and job.started_at is not None:
        started = job.started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        age = (datetime.now(UTC) - started).total_seconds()
        return age < started_grace_seconds
    return False


def run_is_alive(redis: Redis, *, project_id: int, job_id: str | None) -> bool:
    """Whether the job a sync row names will still run or is running now.

    A running sync job holds its project's running lock under its own job id and
    renews it every few seconds, so the lock is the liveness signal of a started job;
    a job that is waiting (queued, scheduled) is alive while RQ has it. A job started
    moments ago may not have claimed the lock yet.
    """
    if job_id is None:
        return False
    if redis.get(sync_lock_key(project_id)) == job_id.encode():
        return True
    return job_is_live(redis, job_id)


def queued_sync_if_live(redis: Redis, sync_id: int) -> ProjectSync | None:
    """The queued sync a pending marker names, or ``None`` if the marker is stale.

    The row is read twice if needed: a postponed run moves ``rq_job_id`` to its next
    attempt just before its current job finishes, and a read between the two must not
    mistake the finished job for a lost one.
    """
    for _ in range(2):
        sync = db.session.get(ProjectSync, sync_id, populate_existing=True)
        if sync is None or sync.status != SyncStatus.QUEUED:
            return None
        job_id = sync.rq_job_id
        if run_is_alive(redis, project_id=sync.project_id, job_id=job_id):
            return sync
        db.session.rollback()  # next read in a fresh transaction
        again = db.session.get(ProjectSync, sync_id, populate_existing=True)
        if again is None or again.rq_job_id == job_id:
            return None
    return None


def request_sync(
    project_id: int,
    *,
    trigger: SyncTrigger,
    delivery_id: str | None = None,
    full: bool = False,
    pushed: PushedHead | None = None,
) -> ProjectSync:
    """Ask for a sync of a project; return the queued sync that will serve the request.

    Returns the project's already-queued sync if there is a live one (nothing is
    enqueued); otherwise commits a new queued ProjectSync (remembering ``pushed``) and
    enqueues its job. Joining a queued sync may change it (:func:`_join`); when that
    sync has started meanwhile, a new one is queued. Raises
    ``SyncReservationBusyError`` if another request's reservation does not resolve in
    time, and ``redis.exceptions.RedisError`` if Redis is unreachable (the new row stays
    queued, and the repair pass enqueues it when Redis is back).
    """
    redis = redis_connection()
    key = sync_pending_key(project_id)
    deadline = time.monotonic() + defaults.SYNC_RESERVATION_WAIT_SECONDS
    while True:
        raw: bytes | None = redis.get(key)  # type: ignore[assignment]
        if raw is None:
            token = f"{RESERVATION_PREFIX}{uuid.uuid4().hex}"
            if redis.set(key, token, nx=True, px=defaults.SYNC_RESERVATION_TTL_MS):
                return _create(
                    redis,
                    project_id,
                    token,
                    trigger=trigger,
                    delivery_id=delivery_id,
                    full=full,
                    pushed=pushed,
                )
            continue
        marker = raw.decode()
        if marker.startswith(RESERVATION_PREFIX):
            if time.monotonic() > deadline:
                raise SyncReservationBusyError(
                    f"project {project_id}: another request is still creating its sync"
                )
            time.sleep(0.01)
            continue
        sync = queued_sync_if_live(redis, int(marker))
        if sync is not None and _join(sync, full=full):
            return sync
        if sync is None:
            delete_if_equal(redis, key, marker)
        else:
            time.sleep(0.01)  # it started: its job clears the marker before it reads


def _join(sync: ProjectSync, *, full: bool) -> bool:
    """Make a queued sync serve one more request, unless its job has started; True if
    it will. It runs full if the request asks, and forgets its pushed head (the branch
    may have moved since that push, so the job must ask for the head itself).

    The job counts its attempt (``attempts``) before it reads ``full_requested`` and
    the pushed head, so an update guarded by the attempt count seen here either lands
    before that read or changes nothing (and the caller queues a new sync).
    """
    changes: dict[str, Any] = {}
    if full and not sync.full_requested:
        changes["full_requested"] = True
    if sync.pushed_after is not None or sync.pushed_before is not None:
        changes.update(pushed_before=None, pushed_after=None)
    if not changes:
        return True
    result: CursorResult[Any] = db.session.execute(  # type: ignore[assignment]
        update(ProjectSync)
        .where(
            ProjectSync.id == sync.id,
            ProjectSync.status == SyncStatus.QUEUED,
            ProjectSync.attempts == sync.attempts,
        )
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    changed = result.rowcount
    db.session.commit()
    if changed:
        db.session.refresh(sync)
    return bool(changed)


def _create(
    redis: Redis,
    project_id: int,
    token: str,
    *,
    trigger: SyncTrigger,
    delivery_id: str | None,
    full: bool = False,
    pushed: PushedHead | None = None,
) -> ProjectSync:
    """Commit a queued sync, then publish the marker and enqueue its job atomically."""
    key = sync_pending_key(project_id)
    try:
        sync = ProjectSync(
            project_id=project_id,
            trigger=trigger,
            delivery_id=delivery_id,
            status=SyncStatus.QUEUED,
            full_requested=full,
            pushed_before=pushed.before if pushed else None,
            pushed_after=pushed.after if pushed else None,
        )
        db.session.add(sync)
        db.session.flush()
        sync.rq_job_id = sync_job_id(sync.id)
        # Committed before the job exists, so the job always finds its row.
        db.session.commit()
    except BaseException:
        db.session.rollback()
        delete_if_equal(redis, key, token)
        raise
    queue = syncs_queue(redis)
    # Told before the job exists: a worker that runs it at once publishes its progress
    # after this, so a page sees the sync queued before it moves.
    changes.sync_queued(redis, sync)
    try:
        with redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) == token.encode():
                    pipe.multi()
                    pipe.set(key, str(sync.id), ex=defaults.SYNC_PENDING_TTL_SECONDS)
                else:
                    # Our reservation expired and someone else took the marker: still
                    # run this sync (harmless extra work), just do not claim the marker.
                    pipe.multi()
                enqueue_run(queue, sync_id=sync.id, job_id=sync.rq_job_id, pipeline=pipe)
                pipe.execute()
            except WatchError:
                enqueue_run(queue, sync_id=sync.id, job_id=sync.rq_job_id)
    except RedisError as exc:
        # The row stays queued: the repair pass enqueues it once Redis answers again.
        sync.waiting_reason = f"waiting for the queue: Redis is unreachable ({exc})"
        db.session.commit()
        raise
    return sync

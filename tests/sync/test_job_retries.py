"""What a sync job does when it cannot finish: wait for the rate limit, back off through
GitHub outages until the deadline, and never let two jobs of one sync both run."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis.lock import Lock
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from github_emulator.knobs import FaultKind
from models import Project, ProjectSync, SyncStatus, SyncTrigger, db
from sync_jobs import defaults, sync_job
from sync_jobs.errors import LockLostError
from sync_jobs.keys import SYNCS_QUEUE, sync_lock_key
from sync_jobs.pipeline import execute_sync
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync

from .conftest import Tracked, assert_matches_git


def run_queued_jobs() -> None:
    connection = redis_connection()
    SimpleWorker([Queue(SYNCS_QUEUE, connection=connection)], connection=connection).work(
        burst=True
    )


def scheduled_at(job_id: str) -> datetime | None:
    registry = ScheduledJobRegistry(SYNCS_QUEUE, connection=redis_connection())
    return registry.get_scheduled_time(job_id) if job_id in registry.get_job_ids() else None


def reload(sync_id: int) -> ProjectSync:
    """The row as committed now (a job run in this process may end the session)."""
    db.session.remove()
    return db.session.get_one(ProjectSync, sync_id)


def run_due_now(sync_id: int) -> ProjectSync:
    """Move the sync's scheduled job to the queue (what RQ's scheduler does when due)."""
    queue = Queue(SYNCS_QUEUE, connection=redis_connection())
    job = Job.fetch(reload(sync_id).rq_job_id or "", connection=redis_connection())
    ScheduledJobRegistry(queue=queue).remove(job)
    queue.enqueue_job(job)
    run_queued_jobs()
    return reload(sync_id)


def test_github_outage_backs_off_then_the_sync_lands_when_github_answers(
    app_context: Flask, tracked: Tracked
) -> None:
    tracked.server.knobs.add_fault(r"/repos/", FaultKind.SERVER_ERROR, count=10_000)
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL).id
    waits = []
    for _ in range(3):
        if waits:
            sync = run_due_now(sync_id)
        else:
            run_queued_jobs()
            sync = reload(sync_id)
        assert sync.status is SyncStatus.QUEUED, "an outage never fails a sync early"
        assert sync.waiting_reason and sync.waiting_reason.startswith("GitHub unavailable")
        due = scheduled_at(sync.rq_job_id or "")
        assert due is not None
        waits.append((due - datetime.now(UTC)).total_seconds())
    # RQ keeps scheduled times in whole seconds, and reading them takes a moment.
    assert all(
        want - 2.5 <= w <= want + 0.5 for w, want in zip(waits, [5, 10, 20], strict=True)
    ), waits
    assert sync.attempts == 3

    tracked.server.knobs.clear_faults()
    sync = run_due_now(sync_id)
    assert sync.status is SyncStatus.SUCCEEDED
    assert sync.waiting_reason is None and sync.retry_at is None
    assert_matches_git(tracked, tracked.history.head or "")


def test_an_outage_longer_than_the_deadline_fails_the_sync_with_its_reason(
    app: Flask, tracked: Tracked
) -> None:
    app.config["SYNC_RETRY_DEADLINE_SECONDS"] = 12
    with app.app_context():
        tracked.server.knobs.add_fault(r"/repos/", FaultKind.SERVER_ERROR, count=10_000)
        sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL).id
        run_queued_jobs()  # ~4 s of call retries and 5 s of backoff fit in 12 s
        assert reload(sync_id).status is SyncStatus.QUEUED
        sync = run_due_now(sync_id)  # second failure: 10 s more would pass the deadline
        assert sync.status is SyncStatus.FAILED
        assert sync.error and "retry deadline" in sync.error and "500" in sync.error


def test_a_rate_limit_reschedules_for_the_reset_and_says_so(
    app_context: Flask, tracked: Tracked
) -> None:
    tracked.server.rate_limiter.configure(limit=1, window=600)
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL).id
    started = datetime.now(UTC)
    run_queued_jobs()
    sync = reload(sync_id)
    assert sync.status is SyncStatus.QUEUED
    assert sync.waiting_reason and sync.waiting_reason.startswith(
        "waiting for GitHub's rate limit until"
    )
    due = scheduled_at(sync.rq_job_id or "")
    assert due is not None
    # The reset is ~600 s away: the job waits for it (plus a margin), not 5 s.
    assert 590 <= (due - started).total_seconds() <= 600 + defaults.RATE_LIMIT_MARGIN_SECONDS + 5
    assert sync.retry_at is not None

    tracked.server.rate_limiter.reset()
    sync = run_due_now(sync_id)
    assert sync.status is SyncStatus.SUCCEEDED


def test_a_second_job_of_the_same_sync_waits_for_the_first(
    app_context: Flask, tracked: Tracked
) -> None:
    sync = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL)
    redis = redis_connection()
    # The first job holds the lock under its own id; a duplicate job of this sync (a
    # repair that judged the first dead) must not run beside it.
    redis.set(sync_lock_key(tracked.project_id), "project-sync-sync-first-job", ex=60)
    sync_id = sync.id
    message = sync_job.run_sync(sync_id)
    assert message.startswith("postponed")
    sync = reload(sync_id)
    assert sync.status is SyncStatus.QUEUED
    assert sync.attempts == 0


def test_a_duplicate_job_after_success_changes_nothing(
    app_context: Flask, tracked: Tracked
) -> None:
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL).id
    run_queued_jobs()
    db.session.remove()
    head = db.session.get_one(Project, tracked.project_id).current_sync_id
    assert sync_job.run_sync(sync_id) == f"sync {sync_id} is already succeeded"
    db.session.remove()
    assert db.session.get_one(Project, tracked.project_id).current_sync_id == head
    assert db.session.get_one(ProjectSync, head).status is SyncStatus.SUCCEEDED


def test_a_lost_lock_stops_the_sync_before_apply(app_context: Flask, tracked: Tracked) -> None:
    sync = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL)
    phases = []

    def lost_after_resolve() -> None:
        phases.append(1)
        if len(phases) >= 2:
            raise LockLostError("taken over")

    sync_id = sync.id
    with pytest.raises(LockLostError):
        execute_sync(sync_id, guard=lost_after_resolve)
    assert not reload(sync_id).status.is_final
    assert db.session.get_one(Project, tracked.project_id).current_sync_id is None


def test_the_heartbeat_retakes_a_vanished_lock_and_notices_a_stolen_one(
    app_context: Flask,
) -> None:
    redis = redis_connection()
    key = sync_lock_key(987_654)
    lock = Lock(redis, key, timeout=defaults.SYNC_LOCK_TTL_SECONDS, thread_local=False)
    assert lock.acquire(token="job-a", blocking=False)
    with sync_job.lock_heartbeat(lock, "job-a") as lost:
        redis.delete(key)  # Redis restarted empty
        time.sleep(defaults.SYNC_LOCK_RENEW_SECONDS + 1)
        assert redis.get(key) == b"job-a" and not lost.is_set()
        redis.set(key, "job-b")  # the repair pass gave the sync to another job
        deadline = time.monotonic() + defaults.SYNC_LOCK_RENEW_SECONDS + 2
        while not lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lost.is_set()
    assert redis.get(key) == b"job-b"
    redis.delete(key)


def test_run_sync_under_a_stolen_lock_does_not_apply(
    app_context: Flask, tracked: Tracked
) -> None:
    """The real heartbeat interval: a sync slowed by latency loses its lock midway."""
    app_context.config["SYNC_HTTP_TIMEOUT_SECONDS"] = 10.0
    tracked.server.knobs.latency = 2.0
    sync = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL)
    redis = redis_connection()
    key = sync_lock_key(tracked.project_id)

    def steal() -> None:
        deadline = time.monotonic() + 10
        while redis.get(key) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        redis.set(key, "project-sync-sync-other")

    thief = threading.Thread(target=steal)
    thief.start()
    message = sync_job.run_sync(sync.id)
    thief.join()
    assert "took over" in message
    db.session.remove()
    assert db.session.get_one(Project, tracked.project_id).current_sync_id is None
    assert redis.get(key) == b"project-sync-sync-other", "the new holder's lock is kept"
    redis.delete(key)


def test_rq_job_status_is_finished_even_when_the_sync_waits(
    app_context: Flask, tracked: Tracked
) -> None:
    """The job ends normally after rescheduling: RQ's own retries play no part."""
    tracked.server.knobs.add_fault(r"/repos/", FaultKind.SERVER_ERROR, count=10_000)
    sync = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL)
    first_job, sync_id = sync.rq_job_id or "", sync.id
    run_queued_jobs()
    assert Job.fetch(first_job, connection=redis_connection()).get_status() == JobStatus.FINISHED
    sync = reload(sync_id)
    assert sync.rq_job_id != first_job
    assert sync.retry_at is not None
    assert sync.retry_at.replace(tzinfo=UTC) > datetime.now(UTC) - timedelta(seconds=1)

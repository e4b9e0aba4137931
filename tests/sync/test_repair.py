"""The repair pass: unfinished syncs whose job is gone run again or close; live ones and
their locks are left alone; projects never synced get their first sync."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from flask import Flask
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from models import Project, ProjectSync, StopKind, SyncStatus, SyncTrigger, db
from sync_jobs import defaults
from sync_jobs.keys import SYNCS_QUEUE, sync_lock_key, sync_pending_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.repair import repair_syncs
from sync_jobs.scheduling import request_sync

from .conftest import Tracked, assert_matches_git, assert_single_chain

CONFIRM = 0.2  # tests that need the real confirmation interval say so


def reload(sync_id: int) -> ProjectSync:
    db.session.remove()
    return db.session.get_one(ProjectSync, sync_id)


def lose_job(sync_id: int, *, running: bool) -> None:
    """What a SIGKILLed worker or a flushed Redis leaves: a row whose job is gone."""
    sync = reload(sync_id)
    Job.fetch(sync.rq_job_id or "", connection=redis_connection()).delete()
    redis_connection().delete(sync_pending_key(sync.project_id))
    if running:
        sync.status = SyncStatus.RUNNING
        sync.attempts = 1
        sync.started_at = datetime.now(UTC)
    db.session.commit()


def run_queued_jobs() -> None:
    connection = redis_connection()
    SimpleWorker([Queue(SYNCS_QUEUE, connection=connection)], connection=connection).work(
        burst=True
    )


def test_a_sync_killed_mid_run_runs_again_and_lands(app_context: Flask, tracked: Tracked) -> None:
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(sync_id, running=True)

    report = repair_syncs(redis_connection(), confirm_seconds=CONFIRM)
    assert report.requeued == 1
    sync = reload(sync_id)
    assert sync.status is SyncStatus.QUEUED
    assert sync.waiting_reason == "its worker stopped; running it again"
    assert Job.fetch(sync.rq_job_id or "", connection=redis_connection()).get_status() == (
        JobStatus.QUEUED
    )
    # Pushes coalesce into the repaired sync again.
    assert redis_connection().get(sync_pending_key(tracked.project_id)) == str(sync_id).encode()
    assert request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id == sync_id

    run_queued_jobs()
    assert reload(sync_id).status is SyncStatus.SUCCEEDED
    assert_matches_git(tracked, tracked.history.head or "")
    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).repairs == 0


def test_live_jobs_and_held_locks_are_left_alone(app_context: Flask, tracked: Tracked) -> None:
    queued = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH)
    queued_job = queued.rq_job_id
    # A running sync whose RQ job hash is gone (Redis flushed) but whose heartbeat has
    # taken its lock again is alive.
    running = ProjectSync(
        project_id=tracked.project_id,
        trigger=SyncTrigger.MANUAL,
        status=SyncStatus.RUNNING,
        rq_job_id="project-sync-sync-x-running",
        attempts=1,
    )
    db.session.add(running)
    db.session.commit()
    running_id = running.id
    redis_connection().set(sync_lock_key(tracked.project_id), "project-sync-sync-x-running")

    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).repairs == 0
    assert reload(queued.id).rq_job_id == queued_job
    assert reload(running_id).status is SyncStatus.RUNNING


def test_a_job_that_comes_back_within_the_confirmation_is_left_alone(
    app_context: Flask, tracked: Tracked
) -> None:
    """The real interval: a lock re-taken by a heartbeat after a Redis restart."""
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(sync_id, running=True)
    job_id = reload(sync_id).rq_job_id or ""
    redis = redis_connection()

    def heartbeat_after_restart() -> None:
        time.sleep(defaults.SYNC_LOCK_RENEW_SECONDS / 2)
        redis.set(sync_lock_key(tracked.project_id), job_id)

    beat = threading.Thread(target=heartbeat_after_restart)
    beat.start()
    report = repair_syncs(redis_connection())
    beat.join()
    assert report.repairs == 0
    assert reload(sync_id).rq_job_id == job_id


def test_of_several_dead_syncs_the_newest_runs_and_the_older_close(
    app_context: Flask, tracked: Tracked
) -> None:
    older = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(older, running=True)
    newer = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    assert newer != older
    lose_job(newer, running=False)

    report = repair_syncs(redis_connection(), confirm_seconds=CONFIRM)
    assert (report.requeued, report.superseded) == (1, 1)
    assert reload(older).status is SyncStatus.SUPERSEDED
    assert f"sync {newer}" in (reload(older).error or "")
    assert reload(newer).status is SyncStatus.QUEUED
    assert reload(newer).waiting_reason == "its queued job was lost; queued again"

    run_queued_jobs()
    assert reload(newer).status is SyncStatus.SUCCEEDED
    assert_single_chain(tracked.project_id)


def test_a_dead_sync_behind_a_live_one_closes(app_context: Flask, tracked: Tracked) -> None:
    dead = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(dead, running=True)
    live = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    report = repair_syncs(redis_connection(), confirm_seconds=CONFIRM)
    assert (report.requeued, report.superseded) == (0, 1)
    assert reload(dead).status is SyncStatus.SUPERSEDED
    assert reload(live).status is SyncStatus.QUEUED


def test_a_sync_that_keeps_killing_its_worker_ends_failed(
    app_context: Flask, tracked: Tracked
) -> None:
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(sync_id, running=True)
    sync = reload(sync_id)
    sync.attempts = defaults.SYNC_MAX_UNEXPECTED_FAILURES
    db.session.commit()
    report = repair_syncs(redis_connection(), confirm_seconds=CONFIRM)
    assert report.failed == 1
    sync = reload(sync_id)
    assert sync.status is SyncStatus.FAILED
    assert sync.error and "worker stopped" in sync.error


def test_a_lost_wait_for_a_rate_limit_keeps_its_time(app_context: Flask, tracked: Tracked) -> None:
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(sync_id, running=False)
    sync = reload(sync_id)
    sync.retry_at = datetime.now(UTC) + timedelta(seconds=120)
    sync.waiting_reason = "waiting for GitHub's rate limit until later"
    db.session.commit()
    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).requeued == 1
    job_id = reload(sync_id).rq_job_id or ""
    registry = ScheduledJobRegistry(SYNCS_QUEUE, connection=redis_connection())
    due = registry.get_scheduled_time(job_id)
    assert 100 < (due - datetime.now(UTC)).total_seconds() <= 121


def test_a_dead_restore_runs_again(app_context: Flask, tracked: Tracked) -> None:
    from sync_jobs.restore_job import request_restore

    first = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    run_queued_jobs()
    tracked.push()
    request_sync(tracked.project_id, trigger=SyncTrigger.PUSH)
    run_queued_jobs()
    restore_id = request_restore(tracked.project_id, from_sync_id=first).id
    lose_job(restore_id, running=False)
    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).requeued == 1
    run_queued_jobs()
    assert reload(restore_id).status is SyncStatus.SUCCEEDED


def test_a_project_never_synced_gets_its_first_sync(app_context: Flask, tracked: Tracked) -> None:
    """An installation delivery committed its rows, then died before requesting."""
    assert db.session.scalars(select(ProjectSync)).all() == []
    report = repair_syncs(redis_connection(), confirm_seconds=CONFIRM)
    assert report.first_syncs == 1
    [sync] = db.session.scalars(select(ProjectSync)).all()
    assert sync.trigger is SyncTrigger.INSTALL
    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).first_syncs == 0
    # A stopped project is not restarted behind a person's back.
    project = db.session.get_one(Project, tracked.project_id)
    project.stop(StopKind.OTHER, "stopped")
    db.session.execute(ProjectSync.__table__.delete())
    db.session.commit()
    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).first_syncs == 0

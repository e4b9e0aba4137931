"""A sync whose job keeps failing is retried by RQ, then ends failed with its reason."""

from __future__ import annotations

from flask import Flask
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from github_emulator.knobs import FaultKind
from models import ProjectSync, SyncStatus, SyncTrigger, db
from sync_jobs import defaults
from sync_jobs.keys import SYNCS_QUEUE
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync

from .conftest import Tracked, assert_matches_git


def run_queued_jobs() -> None:
    connection = redis_connection()
    SimpleWorker([Queue(SYNCS_QUEUE, connection=connection)], connection=connection).work(
        burst=True
    )


def test_retries_then_a_final_failure_then_a_fresh_sync_succeeds(
    app_context: Flask, tracked: Tracked
) -> None:
    tracked.server.knobs.add_fault(r"/repos/", FaultKind.SERVER_ERROR, count=10_000)
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL).id

    run_queued_jobs()
    sync = db.session.get_one(ProjectSync, sync_id)
    db.session.refresh(sync)
    assert sync.status is SyncStatus.QUEUED, "a retryable failure leaves the sync queued"
    assert sync.error
    assert sync.rq_job_id is not None
    job = Job.fetch(sync.rq_job_id, connection=redis_connection())
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == len(defaults.SYNC_JOB_RETRY_INTERVALS_SECONDS) - 1

    # Skip the waits: the job's last retry, run now.
    ScheduledJobRegistry(queue=Queue(SYNCS_QUEUE, connection=redis_connection())).remove(job)
    job.retries_left = 0
    job.save()
    Queue(SYNCS_QUEUE, connection=redis_connection()).enqueue_job(job)
    run_queued_jobs()

    db.session.refresh(sync)
    assert sync.status is SyncStatus.FAILED
    assert sync.error is not None and sync.error.startswith("gave up after 4 attempts")
    assert sync.finished_at is not None

    # Nothing is left holding the project: once GitHub answers, a new request syncs.
    tracked.server.knobs.clear_faults()
    retry_id = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL).id
    assert retry_id != sync_id
    run_queued_jobs()
    fresh = db.session.get_one(ProjectSync, retry_id)
    db.session.refresh(fresh)
    assert fresh.status is SyncStatus.SUCCEEDED
    assert_matches_git(tracked, tracked.history.head or "")

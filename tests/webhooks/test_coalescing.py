"""Sync requests: coalescing, RQ's edges, the running lock, bursts under real workers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from models import (
    DeliveryStatus,
    Installation,
    Project,
    ProjectSync,
    Repository,
    SyncStatus,
    SyncTrigger,
    WebhookDelivery,
    db,
)
from sync_jobs import defaults, sync_job
from sync_jobs.errors import SyncReservationBusyError
from sync_jobs.keys import SYNCS_QUEUE, sync_lock_key, sync_pending_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync
from sync_jobs.sweeper import sweep_deliveries
from tests.webhooks.conftest import RedisServer, deliver, payload, run_delivery_jobs
from tests.webhooks.executors import DURATION_KEY, HEAD_KEY, record_run
from webhook_app import create_app


def make_project(*, branch: str = "main") -> int:
    """The rows an installation delivery would leave (repository 700001 = octo-org/widgets)."""
    installation = Installation(github_id=31337, account_login="octo-org", permissions={})
    repository = Repository(
        github_id=700001,
        full_name="octo-org/widgets",
        default_branch=branch,
        installation=installation,
    )
    project = Project(repository=repository, branch=branch)
    db.session.add_all([installation, repository, project])
    db.session.commit()
    return project.id


def syncs_of(project_id: int) -> list[ProjectSync]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(ProjectSync).filter_by(project_id=project_id).order_by(ProjectSync.id)
        )
    )


def job_of(sync: ProjectSync) -> Job:
    return Job.fetch(sync.rq_job_id or "", connection=redis_connection())


def test_requests_coalesce_while_a_sync_is_queued(app_context: Flask) -> None:
    project_id = make_project()
    first = request_sync(project_id, trigger=SyncTrigger.INSTALL, delivery_id="d-1")
    again = request_sync(project_id, trigger=SyncTrigger.PUSH, delivery_id="d-2")
    assert again.id == first.id
    assert len(syncs_of(project_id)) == 1
    queue = Queue(SYNCS_QUEUE, connection=redis_connection())
    assert queue.job_ids == [first.rq_job_id]
    assert (first.rq_job_id or "").startswith(f"project-sync-sync-{first.id}-")
    assert redis_connection().get(sync_pending_key(project_id)) == str(first.id).encode()


def _make_stale(sync: ProjectSync, how: str) -> None:
    job = job_of(sync)
    if how == "job gone":
        job.delete()
    elif how == "job failed":
        job.set_status(JobStatus.FAILED)
    elif how == "job finished, hash kept for result_ttl":
        job.set_status(JobStatus.FINISHED)
    elif how == "job started by a worker that died (no running lock)":
        started = datetime.now(UTC) - timedelta(seconds=defaults.SYNC_STARTED_GRACE_SECONDS + 5)
        job.started_at = started
        job.save()
        job.set_status(JobStatus.STARTED)
    elif how == "row already final":
        sync.status = SyncStatus.FAILED
        db.session.commit()
    elif how == "row deleted":
        db.session.delete(sync)
        db.session.commit()


@pytest.mark.parametrize(
    "how",
    [
        "job gone",
        "job failed",
        "job finished, hash kept for result_ttl",
        "job started by a worker that died (no running lock)",
        "row already final",
        "row deleted",
    ],
)
def test_a_stale_marker_never_blocks_future_syncs(app_context: Flask, how: str) -> None:
    project_id = make_project()
    stale = request_sync(project_id, trigger=SyncTrigger.PUSH)
    stale_id, stale_job = stale.id, stale.rq_job_id
    _make_stale(stale, how)
    fresh = request_sync(project_id, trigger=SyncTrigger.PUSH)
    assert fresh.status == SyncStatus.QUEUED
    if how != "row deleted":  # SQLite hands a deleted row's id out again
        assert fresh.id != stale_id
        # a new job under its own id: the old job's hash (whatever RQ keeps) is untouched
        assert fresh.rq_job_id != stale_job
    assert job_of(fresh).get_status() == JobStatus.QUEUED
    assert redis_connection().get(sync_pending_key(project_id)) == str(fresh.id).encode()
    assert request_sync(project_id, trigger=SyncTrigger.PUSH).id == fresh.id


def test_a_recently_started_job_still_counts_as_queued(app_context: Flask) -> None:
    project_id = make_project()
    sync = request_sync(project_id, trigger=SyncTrigger.PUSH)
    job = job_of(sync)
    job.started_at = datetime.now(UTC)
    job.save()
    job.set_status(JobStatus.STARTED)
    assert request_sync(project_id, trigger=SyncTrigger.PUSH).id == sync.id


def test_a_reservation_that_never_resolves_raises(
    app_context: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    project_id = make_project()
    monkeypatch.setattr(defaults, "SYNC_RESERVATION_WAIT_SECONDS", 0.2)
    redis_connection().set(sync_pending_key(project_id), "reserving:someone", px=60_000)
    with pytest.raises(SyncReservationBusyError):
        request_sync(project_id, trigger=SyncTrigger.PUSH)
    assert syncs_of(project_id) == []


def test_concurrent_requests_create_one_sync(app: Flask) -> None:
    with app.app_context():
        project_id = make_project()
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(16)

    def ask() -> None:
        with app.app_context():
            try:
                start.wait()
                results.append(request_sync(project_id, trigger=SyncTrigger.PUSH).id)
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    with app.app_context():
        assert len(syncs_of(project_id)) == 1
        assert Queue(SYNCS_QUEUE, connection=redis_connection()).count == 1


@pytest.fixture
def recording_executor() -> Any:
    sync_job.executor = record_run
    yield record_run
    sync_job.executor = None


def test_run_sync_clears_marker_runs_and_releases(
    app_context: Flask, recording_executor: Any
) -> None:
    project_id = make_project()
    redis = redis_connection()
    redis.set(HEAD_KEY.format(project_id=project_id), "a" * 40)
    redis.set(DURATION_KEY, "0")
    sync = request_sync(project_id, trigger=SyncTrigger.PUSH)
    assert sync_job.run_sync(sync.id) == f"sync {sync.id} ran"
    [done] = syncs_of(project_id)
    assert (done.status, done.head_commit_sha) == (SyncStatus.SUCCEEDED, "a" * 40)
    assert redis.get(sync_pending_key(project_id)) is None
    assert redis.get(sync_lock_key(project_id)) is None
    # a retried job after success does nothing
    assert sync_job.run_sync(sync.id) == f"sync {sync.id} is already succeeded"
    # the next request is a new sync
    assert request_sync(project_id, trigger=SyncTrigger.PUSH).id != sync.id


def test_run_sync_postpones_while_another_sync_runs(
    app_context: Flask, recording_executor: Any
) -> None:
    project_id = make_project()
    redis = redis_connection()
    redis.set(sync_lock_key(project_id), "another-job", ex=60)  # another sync runs
    sync = request_sync(project_id, trigger=SyncTrigger.PUSH)
    first_job = sync.rq_job_id
    message = sync_job.run_sync(sync.id)
    assert message.startswith("postponed 1s")
    db.session.refresh(sync)
    assert sync.status == SyncStatus.QUEUED
    assert sync.rq_job_id != first_job
    scheduled = ScheduledJobRegistry(SYNCS_QUEUE, connection=redis)
    assert sync.rq_job_id in scheduled.get_job_ids()
    # the marker is kept, so requests still coalesce into the postponed sync
    assert redis.get(sync_pending_key(project_id)) == str(sync.id).encode()
    assert request_sync(project_id, trigger=SyncTrigger.PUSH).id == sync.id
    # once the running sync is done, the next attempt runs
    redis.delete(sync_lock_key(project_id))
    redis.set(DURATION_KEY, "0")
    assert sync_job.run_sync(sync.id, postponed=1) == f"sync {sync.id} ran"


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_push_burst_under_real_workers_costs_at_most_two_syncs(
    app: Flask, client: FlaskClient, rq_workers: Any, tmp_path: Path
) -> None:
    """100 pushes while syncs take a while: at most 2 syncs, the last on the newest head,
    every delivery processed exactly once, by three real ``rq worker`` processes."""
    with app.app_context():
        project_id = make_project()
        redis = redis_connection()
        redis.set(DURATION_KEY, "2.5")
    head_key = HEAD_KEY.format(project_id=project_id)
    rq_workers(3)
    body = payload("push")
    for number in range(100):
        head = f"{number + 1:040x}"
        redis.set(head_key, head)  # the branch moves, then GitHub sends the push
        response = deliver(client, "push", {**body, "after": head})
        assert response.status_code == 202

    def settled() -> bool:
        with app.app_context():
            db.session.expire_all()
            waiting = db.session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.status != DeliveryStatus.PROCESSED)
            ).all()
            open_syncs = [s for s in syncs_of(project_id) if not SyncStatus(s.status).is_final]
            return not waiting and not open_syncs

    _wait(settled, 60, f"deliveries and syncs to settle (logs in {tmp_path})")
    with app.app_context():
        syncs = syncs_of(project_id)
        deliveries = db.session.scalars(select(WebhookDelivery)).all()
    assert 1 <= len(syncs) <= 2, [(s.id, s.status) for s in syncs]
    assert all(s.status == SyncStatus.SUCCEEDED for s in syncs)
    assert syncs[-1].head_commit_sha == f"{100:040x}"
    assert len(deliveries) == 100
    assert all(d.attempts == 1 for d in deliveries)


def test_redis_stopped_during_burst_then_swept(
    app_settings: dict[str, Any], app: Flask, own_redis: RedisServer
) -> None:
    """Deliveries keep being acknowledged while Redis is down; after it comes back (empty,
    it had no persistence) the sweeper enqueues what never reached or was lost from the
    queue, and every delivery is processed exactly once."""
    settings = {**app_settings, "REDIS_URL": own_redis.url}
    receiver = create_app(settings)
    client = receiver.test_client()
    with receiver.app_context():
        make_project()
    statuses = []
    body = payload("push")
    for number in range(60):
        if number == 20:
            own_redis.stop()
        if number == 45:
            own_redis.start()
        response = deliver(client, "push", {**body, "after": f"{number + 1:040x}"})  # type: ignore[arg-type]
        assert response.status_code == 202
        statuses.append(response.json["status"])
    assert statuses[:20] == ["queued"] * 20  # lost with the Redis restart
    assert statuses[20:45] == ["pending"] * 25
    assert statuses[45:] == ["queued"] * 15
    assert run_delivery_jobs(receiver) == 15
    with receiver.app_context():
        assert sweep_deliveries(redis_connection(), grace_seconds=0) == 45
        assert sweep_deliveries(redis_connection(), grace_seconds=0) == 0  # jobs now live
    assert run_delivery_jobs(receiver) == 45
    with receiver.app_context():
        rows = db.session.scalars(select(WebhookDelivery)).all()
        assert len(rows) == 60
        assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.PROCESSED, 1)}
        assert sweep_deliveries(redis_connection(), grace_seconds=0) == 0
        [only] = db.session.scalars(select(ProjectSync)).all()  # all 60 pushes coalesced
        assert only.status == SyncStatus.QUEUED

"""The worker's delivery batches: no fork per delivery, RQ's view of each job kept, the
sweeper's contract kept, and syncs still isolated in their own work horse.

The worker runs in this process in burst mode (``SyncWorker.work(burst=True)``), as
``python -m worker`` would, against the test's Redis and database.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import now, utcformat
from sqlalchemy import func, select

from models import DeliveryStatus, WebhookDelivery, db
from sync_jobs.deliveries import deliveries_queue, enqueue_delivery
from sync_jobs.keys import DELIVERIES_QUEUE, SYNCS_QUEUE, delivery_job_id
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import job_is_live
from sync_jobs.sweeper import DEAD_DELIVERY_JOB_SECONDS, sweep_deliveries
from sync_jobs.worker import SyncWorker
from tests.webhooks.conftest import deliver, payload, run_delivery_batches

pytestmark = pytest.mark.usefixtures("default_branches")


def store_queued(app: Flask, count: int, *, event: str = "star") -> list[str]:
    """``count`` stored deliveries with their jobs queued (an event nothing handles)."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with app.app_context():
        db.session.add_all(
            WebhookDelivery(delivery_id=d, event=event, payload="{}", status=DeliveryStatus.QUEUED)
            for d in ids
        )
        db.session.commit()
        queue = deliveries_queue(redis_connection())
        for delivery_id in ids:
            enqueue_delivery(queue, delivery_id=delivery_id)
    return ids


def statuses(app: Flask) -> dict[str, DeliveryStatus]:
    with app.app_context():
        rows = db.session.execute(select(WebhookDelivery.delivery_id, WebhookDelivery.status))
        return dict(rows.tuples().all())


def test_pushes_are_processed_in_this_process_without_a_fork(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert deliver(client, "installation", payload("installation.created")).status_code == 202
    run_delivery_batches(app)
    pushes = 300
    for _ in range(pushes):
        assert deliver(client, "push", payload("push")).status_code == 202

    def no_fork() -> int:
        raise AssertionError("a delivery must not fork a work horse")

    monkeypatch.setattr(os, "fork", no_fork)
    started = time.perf_counter()
    assert run_delivery_batches(app) == pushes
    elapsed = time.perf_counter() - started
    print(f"\n{pushes} pushes in {elapsed:.2f} s: {pushes / elapsed:.0f} deliveries/s")
    assert list(statuses(app).values()).count(DeliveryStatus.PROCESSED) == pushes + 1
    with app.app_context():
        redis = redis_connection()
        some = Job.fetch(delivery_job_id(next(iter(statuses(app)))), connection=redis)
        assert some.get_status() == JobStatus.FINISHED
        assert 0 < redis.ttl(some.key) <= app.config["JOB_RESULT_TTL_SECONDS"]


def test_a_batch_that_runs_out_of_time_queues_the_rest_again_in_order(app: Flask) -> None:
    ids = store_queued(app, 5)
    with app.app_context():
        redis = redis_connection()
        queue = Queue(DELIVERIES_QUEUE, connection=redis)
        worker = SyncWorker([queue], connection=redis, app=app)
        worker.delivery_batch_seconds = 0  # every delivery after the first is over time
        job, _ = Queue.dequeue_any([queue], None, connection=redis)  # type: ignore[misc]
        worker.run_delivery_batch(job, queue)
        assert queue.job_ids == [delivery_job_id(d) for d in ids[1:]]
        assert {Job.fetch(j, connection=redis).get_status() for j in queue.job_ids} == {
            JobStatus.QUEUED
        }
    assert [statuses(app)[d] for d in ids] == [DeliveryStatus.IGNORED] + [
        DeliveryStatus.QUEUED
    ] * 4
    run_delivery_batches(app)
    assert set(statuses(app).values()) == {DeliveryStatus.IGNORED}


def test_jobs_of_a_batch_look_started_and_a_dead_workers_batch_is_swept(app: Flask) -> None:
    """A worker killed mid-batch leaves its jobs started; the sweeper takes them back
    once they are older than a job could run, as it does for a dead work horse."""
    ids = store_queued(app, 4)
    with app.app_context():
        redis = redis_connection()
        queue = Queue(DELIVERIES_QUEUE, connection=redis)
        worker = SyncWorker(
            [queue, Queue(SYNCS_QUEUE, connection=redis)], connection=redis, app=app
        )
        first, _ = Queue.dequeue_any([queue], None, connection=redis)  # type: ignore[misc]
        jobs = [first, *worker._claim_deliveries(queue)]
        worker._mark_started(jobs, queue)  # ... and the worker dies here
        assert queue.count == 0
        assert all(job_is_live(redis, delivery_job_id(d)) for d in ids)
        assert sweep_deliveries(redis, grace_seconds=0) == 0
        long_ago = utcformat(now() - timedelta(seconds=DEAD_DELIVERY_JOB_SECONDS + 1))
        for delivery_id in ids:
            redis.hset(f"rq:job:{delivery_job_id(delivery_id)}", "started_at", long_ago)
        assert sweep_deliveries(redis, grace_seconds=0) == 4
        assert queue.job_ids == [delivery_job_id(d) for d in ids]
    run_delivery_batches(app)
    assert set(statuses(app).values()) == {DeliveryStatus.IGNORED}


def test_other_jobs_in_the_deliveries_queue_run_the_usual_way(app: Flask) -> None:
    store_queued(app, 2)
    with app.app_context():
        redis = redis_connection()
        other = Queue(DELIVERIES_QUEUE, connection=redis).enqueue("builtins.len", "abc")
    store_queued(app, 2)
    run_delivery_batches(app)
    assert set(statuses(app).values()) == {DeliveryStatus.IGNORED}
    with app.app_context():
        job = Job.fetch(other.id, connection=redis_connection())
        assert job.get_status() == JobStatus.FINISHED and job.return_value() == 3


def test_a_sync_horse_does_not_inherit_the_workers_database_connections(app: Flask) -> None:
    store_queued(app, 3)  # processed first, in the worker: its pool keeps a connection
    with app.app_context():
        redis = redis_connection()
        syncs = Queue(SYNCS_QUEUE, connection=redis)
        probe = syncs.enqueue("tests.webhooks.executors.pooled_connections_at_start")
        worker = SyncWorker([deliveries_queue(redis), syncs], connection=redis, app=app)
        worker.work(burst=True)
        assert db.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
        assert Job.fetch(probe.id, connection=redis).return_value() == 0


def test_outcomes_of_a_batch_are_written_in_one_transaction(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_queued(app, 20)
    commits: list[Any] = []
    with app.app_context():
        from sqlalchemy import event

        def count(connection: Any) -> None:
            commits.append(connection)

        event.listen(db.engine, "commit", count)
        try:
            run_delivery_batches(app)
        finally:
            event.remove(db.engine, "commit", count)
        done = db.session.scalar(
            select(func.count()).where(WebhookDelivery.status == DeliveryStatus.IGNORED)
        )
    assert done == 20
    assert len(commits) == 1

"""Processes that outlive their dependencies, and the gaps a failure used to leave.

The worker and the maintenance process run as real processes against a Redis of the
test's own, which is killed and restarted empty; nothing restarts them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.timeouts import JobTimeoutException
from sqlalchemy import select, text

from models import DeliveryStatus, Project, ProjectSync, WebhookDelivery, db
from sync_jobs import defaults, deliveries, installations
from sync_jobs.deliveries import PROCESS_DELIVERY, deliveries_queue, enqueue_delivery
from sync_jobs.keys import DELIVERIES_QUEUE, delivery_job_id
from sync_jobs.redis_client import redis_connection
from sync_jobs.sweeper import sweep_deliveries
from webhook_app import create_app

from .conftest import ROOT, RedisServer, free_port, payload, worker_environment


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def store_delivery(*, event: str = "star", status: DeliveryStatus = DeliveryStatus.PENDING) -> str:
    """A stored delivery of an event nothing handles: processing marks it ignored."""
    delivery_id = str(uuid.uuid4())
    db.session.add(
        WebhookDelivery(delivery_id=delivery_id, event=event, payload="{}", status=status)
    )
    db.session.commit()
    return delivery_id


def status_of(app: Flask, delivery_id: str) -> DeliveryStatus | None:
    with app.app_context():
        try:
            row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
            return row.status if row else None
        finally:
            db.session.remove()


@pytest.fixture
def own_app(app_settings: dict[str, Any], app: Flask, own_redis: RedisServer) -> Flask:
    """The test's app, on the Redis the test may kill."""
    return create_app({**app_settings, "REDIS_URL": own_redis.url})


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, app: Flask, *argv: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        child = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=worker_environment(app, tmp_path),
            stdout=log, stderr=subprocess.STDOUT,
        )
        started.append(child)
        return child

    yield start
    for child in started:
        child.send_signal(signal.SIGTERM)
    for child in started:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# What is tested is the worker and Redis; the database behind them does not change it.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_worker_outlives_a_redis_restart(
    own_app: Flask, own_redis: RedisServer, process: Any, tmp_path: Path
) -> None:
    worker = process("worker", own_app, "-m", "worker")
    connection = redis_connection(own_app)
    wait_until(lambda: Worker.all(connection=connection), "the worker to register")

    own_redis.stop()
    time.sleep(4)
    assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    own_redis.start()  # empty: no persistence

    with own_app.app_context():
        now_id = store_delivery()
        later_id = store_delivery()
        enqueue_delivery(deliveries_queue(connection), delivery_id=now_id)
        # A delayed job needs the worker's scheduler, which died with the outage.
        Queue(DELIVERIES_QUEUE, connection=connection).enqueue_in(
            timedelta(seconds=2), PROCESS_DELIVERY, args=(later_id,),
            job_id=delivery_job_id(later_id),
        )
    wait_until(lambda: status_of(own_app, now_id) is DeliveryStatus.IGNORED, "a queued job")
    # The scheduler died with the outage; the worker's maintenance starts a new one.
    wait_until(
        lambda: status_of(own_app, later_id) is DeliveryStatus.IGNORED, "a delayed job", 60
    )
    wait_until(lambda: Worker.all(connection=connection), "the worker to register again", 60)
    assert worker.poll() is None


# What is tested is the maintenance process and Redis; the database does not change it.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_maintenance_process_outlives_a_redis_restart(
    own_app: Flask, own_redis: RedisServer, process: Any, tmp_path: Path
) -> None:
    maintenance = process(
        "maintenance", own_app, "-m", "flask", "--app", "wsgi:app", "maintenance", "run"
    )
    log_file = tmp_path / "maintenance.log"
    wait_until(lambda: "maintenance started" in log_file.read_text(), "maintenance to start")
    own_redis.stop()
    with own_app.app_context():
        waiting = store_delivery()  # stored while Redis was down: the receiver said pending
    # Down until a sweep has met the outage (the first one may have run just before it).
    wait_until(
        lambda: "maintenance pass sweep failed" in log_file.read_text(),
        "a sweep to fail on the outage",
        defaults.SWEEP_INTERVAL_SECONDS + 15,
    )
    time.sleep(2)
    assert maintenance.poll() is None, log_file.read_text()
    own_redis.start()
    connection = redis_connection(own_app)
    wait_until(
        lambda: delivery_job_id(waiting) in Queue(DELIVERIES_QUEUE, connection=connection).job_ids,
        "the sweep to enqueue the waiting delivery",
        45,
    )
    assert maintenance.poll() is None
    log = (tmp_path / "maintenance.log").read_text()
    assert log.count("maintenance pass sweep failed") == 1


def test_an_orphan_behind_a_backlog_of_live_jobs_is_swept(app_context: Flask) -> None:
    queue = deliveries_queue(redis_connection())
    for _ in range(600):
        enqueue_delivery(queue, delivery_id=store_delivery(status=DeliveryStatus.QUEUED))
    orphan = store_delivery(status=DeliveryStatus.QUEUED)  # its job was lost
    assert sweep_deliveries(redis_connection(), grace_seconds=0) == 1
    assert delivery_job_id(orphan) in queue.job_ids


def test_a_rerun_installation_delivery_still_requests_the_first_syncs(
    app_settings: dict[str, Any], app: Flask, default_branches: dict[str, str]
) -> None:
    """The first run committed the rows, then could not queue (Redis down)."""
    body = payload("installation.created")
    broken = create_app({**app_settings, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    with broken.app_context(), pytest.raises(RedisError):
        installations.installation_created(body, delivery_id="d-1")
    with app.app_context():
        projects = db.session.scalars(select(Project)).all()
        assert projects and db.session.scalars(select(ProjectSync)).all() == []
        outcome = installations.installation_created(body, delivery_id="d-1")
        assert f"{len(projects)} first syncs requested" in outcome.reason
        assert len(db.session.scalars(select(ProjectSync)).all()) == len(projects)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_delivery_job_cut_by_its_timeout_records_the_failure(app_context: Flask) -> None:
    """RQ's job timeout raises inside a query (PostgreSQL: SQLite's cannot be cut short
    that way); the failure is still recorded."""
    delivery_id = store_delivery(status=DeliveryStatus.QUEUED)

    def timeout(signum: int, frame: object) -> None:
        raise JobTimeoutException("Task exceeded maximum timeout value (60 seconds)")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(JobTimeoutException) as cut:
            db.session.execute(text("SELECT pg_sleep(3)"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    deliveries._record_failure(delivery_id, cut.value)
    row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
    assert row is not None and row.attempts == 1
    assert "JobTimeoutException" in (row.status_reason or "")

"""``GET /metrics``: Prometheus text that parses, counters kept in real Redis, live gauges."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from rq import Queue
from rq.job import Job
from rq.utils import utcformat

from models import Installation, Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db
from sync_jobs import metrics
from sync_jobs.keys import ALL_QUEUES, DELIVERIES_QUEUE, KEY_PREFIX, SYNCS_QUEUE
from sync_jobs.redis_client import redis_connection
from tests.conftest import base_settings
from tests.webhooks.conftest import deliver, free_port, payload
from webhook_app import create_app
from webhook_app.config import settings_from_environment

SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
"""Tests about Redis-kept values run once; those reading the database run on both."""

EXPECTED_FAMILIES = {
    "project_sync_deliveries_received": "counter",
    "project_sync_deliveries_processed": "counter",
    "project_sync_syncs_finished": "counter",
    "project_sync_sync_api_calls": "counter",
    "project_sync_sync_duration_seconds": "histogram",
    "project_sync_sync_waits": "counter",
    "project_sync_sync_git_fallbacks": "counter",
    "project_sync_github_api_calls": "counter",
    "project_sync_rate_limit_remaining": "gauge",
    "project_sync_rate_limit_limit": "gauge",
    "project_sync_rate_limit_reset_timestamp": "gauge",
    "project_sync_maintenance_runs": "counter",
    "project_sync_maintenance_repairs": "counter",
    "project_sync_maintenance_failures": "counter",
    "project_sync_queue_depth": "gauge",
    "project_sync_queue_scheduled": "gauge",
    "project_sync_queue_oldest_job_age_seconds": "gauge",
    "project_sync_syncs_not_final": "gauge",
    "project_sync_metrics_source_up": "gauge",
}


def scrape(client: FlaskClient, **headers: str) -> list[Sample]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.content_type.startswith("text/plain; version=")
    return [s for f in text_string_to_metric_families(response.text) for s in f.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and exactly these labels, or None."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) <= 1
    return found[0] if found else None


@SQLITE_ONLY
def test_every_family_is_served_and_parses(app: Flask, client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}
    assert families == EXPECTED_FAMILIES
    samples = scrape(client)
    assert value(samples, "project_sync_metrics_source_up", source="redis") == 1
    assert value(samples, "project_sync_metrics_source_up", source="database") == 1
    for queue in ALL_QUEUES:
        assert value(samples, "project_sync_queue_depth", queue=queue) == 0
        assert value(samples, "project_sync_queue_oldest_job_age_seconds", queue=queue) == 0


@SQLITE_ONLY
def test_the_process_default_registry_is_not_served(app: Flask, client: FlaskClient) -> None:
    """Only Project Sync's families: no python_gc_* or process_* of one gunicorn worker."""
    names = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert all(name.startswith("project_sync_") for name in names)


@SQLITE_ONLY
def test_delivery_counters_move_with_signed_deliveries(app: Flask, client: FlaskClient) -> None:
    first = str(uuid.uuid4())
    assert deliver(client, "push", payload("push"), delivery_id=first).status_code == 202
    assert deliver(client, "push", payload("push")).status_code == 202
    assert deliver(client, "push", payload("push"), delivery_id=first).status_code == 200
    assert deliver(client, "ping", payload("ping")).status_code == 200
    ignored = {"action": "created", **payload("delete.tag")}
    assert deliver(client, "star", ignored).status_code == 202
    assert deliver(client, "push", payload("push"), secret="wrong").status_code == 401
    forged = deliver(client, "made_up_event", payload("push"), secret="wrong")
    assert forged.status_code == 401

    samples = scrape(client)
    received = "project_sync_deliveries_received_total"
    assert value(samples, received, event="push", outcome="accepted") == 2
    assert value(samples, received, event="push", outcome="duplicate") == 1
    assert value(samples, received, event="ping", outcome="accepted") == 1
    assert value(samples, received, event="star", outcome="accepted") == 1
    assert value(samples, received, event="push", outcome="rejected") == 1
    # An unverified event name never becomes a label value of its own.
    assert value(samples, received, event="other", outcome="rejected") == 1
    assert not [s for s in samples if s.labels.get("event") == "made_up_event"]
    assert value(samples, "project_sync_queue_depth", queue=DELIVERIES_QUEUE) == 2


@SQLITE_ONLY
def test_setup_mode_answers_are_counted_as_unavailable(
    app_settings: dict[str, Any], redis_url: str
) -> None:
    app = create_app({**app_settings, "WEBHOOK_SECRETS": ()})
    client = app.test_client()
    assert deliver(client, "push", payload("push")).status_code == 503
    samples = scrape(client)
    assert (
        value(
            samples, "project_sync_deliveries_received_total", event="push", outcome="unavailable"
        )
        == 1
    )


@SQLITE_ONLY
def test_a_recorded_sync_shows_in_the_histogram(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        metrics.record_sync_finished(status="succeeded", trigger="push", seconds=3.0, api_calls=4)
        metrics.record_sync_finished(status="succeeded", trigger="push", seconds=0.1, api_calls=2)
        metrics.record_sync_finished(status="failed", trigger="manual", seconds=4000, api_calls=0)
        metrics.record_sync_finished(status="superseded", trigger="push", seconds=None, api_calls=0)
    samples = scrape(client)
    bucket = "project_sync_sync_duration_seconds_bucket"
    assert value(samples, bucket, le="0.1") == 1  # le is inclusive
    assert value(samples, bucket, le="2.5") == 1
    assert value(samples, bucket, le="5.0") == 2
    assert value(samples, bucket, le="1800.0") == 2
    assert value(samples, bucket, le="+Inf") == 3
    assert value(samples, "project_sync_sync_duration_seconds_count") == 3
    assert value(samples, "project_sync_sync_duration_seconds_sum") == pytest.approx(4003.1)
    finished = "project_sync_syncs_finished_total"
    assert value(samples, finished, status="succeeded", trigger="push") == 2
    assert value(samples, finished, status="failed", trigger="manual") == 1
    assert value(samples, finished, status="superseded", trigger="push") == 1
    assert value(samples, "project_sync_sync_api_calls_total", trigger="push") == 6


@SQLITE_ONLY
def test_every_recording_function_shows(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        metrics.record_delivery_processed("push", "processed")
        metrics.record_sync_waiting(reason="rate_limit")
        metrics.record_sync_waiting(reason="rate_limit")
        metrics.record_api_calls(installation_id=31337, calls=5)
        metrics.record_api_calls(installation_id=31337, calls=2)
        metrics.record_rate_limit(
            installation_id=31337, remaining=4990, limit=5000, reset_epoch=1_900_000_000
        )
        metrics.record_rate_limit(
            installation_id=31337, remaining=4980, limit=5000, reset_epoch=1_900_000_000
        )
        metrics.record_maintenance_pass("repair", repairs=3)
        metrics.record_maintenance_pass("repair", repairs=0, failed=True)
        metrics.record_maintenance_pass("sweep", repairs=0)
    samples = scrape(client)
    assert (
        value(samples, "project_sync_deliveries_processed_total", event="push", status="processed")
        == 1
    )
    assert value(samples, "project_sync_sync_waits_total", reason="rate_limit") == 2
    installation = {"installation_id": "31337"}
    assert value(samples, "project_sync_github_api_calls_total", **installation) == 7
    assert value(samples, "project_sync_rate_limit_remaining", **installation) == 4980
    assert value(samples, "project_sync_rate_limit_limit", **installation) == 5000
    assert value(samples, "project_sync_rate_limit_reset_timestamp", **installation) == 1.9e9
    assert value(samples, "project_sync_maintenance_runs_total", **{"pass": "repair"}) == 2
    assert value(samples, "project_sync_maintenance_runs_total", **{"pass": "sweep"}) == 1
    assert value(samples, "project_sync_maintenance_repairs_total", **{"pass": "repair"}) == 3
    assert value(samples, "project_sync_maintenance_failures_total", **{"pass": "repair"}) == 1


@SQLITE_ONLY
def test_values_are_kept_under_the_project_prefix(app: Flask) -> None:
    with app.app_context():
        metrics.record_delivery_received("push", "accepted")
        keys = {k.decode() for k in redis_connection().keys("*metrics*")}
    assert keys == {f"{KEY_PREFIX}:metrics:deliveries_received_total"}


@SQLITE_ONLY
def test_recording_without_an_app_context_does_nothing(app: Flask) -> None:
    contexts: list[bool] = []

    def record() -> None:
        contexts.append(has_app_context())
        metrics.record_delivery_received("push", "accepted")
        metrics.record_sync_finished(status="succeeded", trigger="push", seconds=1.0, api_calls=1)
        metrics.record_maintenance_pass("repair", repairs=1)

    # pytest-flask pushes a context around each test; a new thread starts without one.
    thread = threading.Thread(target=record)
    thread.start()
    thread.join()
    assert contexts == [False]
    with app.app_context():
        assert redis_connection().keys(f"{KEY_PREFIX}:metrics:*") == []


def closed_port_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@SQLITE_ONLY
def test_recording_never_raises_and_pauses_while_redis_is_down(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    app = create_app(base_settings(database_url, closed_port_redis_url(), str(tmp_path)))
    with app.app_context():
        metrics.record_delivery_received("push", "pending")
        started = time.monotonic()
        for _ in range(100):
            metrics.record_sync_finished(
                status="succeeded", trigger="push", seconds=1.0, api_calls=1
            )
            metrics.record_rate_limit(installation_id=1, remaining=1, limit=1, reset_epoch=1)
        # Paused after the first failure: no connection attempt per call.
        assert time.monotonic() - started < 0.5
        state = app.extensions[metrics.STATE_EXTENSION]
        assert state.paused_until > time.monotonic() and state.logged


def test_metrics_answers_while_redis_is_down(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    app = create_app(base_settings(database_url, closed_port_redis_url(), str(tmp_path)))
    with app.app_context():
        db.create_all()
    samples = scrape(app.test_client())
    assert value(samples, "project_sync_metrics_source_up", source="redis") == 0
    assert value(samples, "project_sync_metrics_source_up", source="database") == 1
    assert value(samples, "project_sync_syncs_not_final", status="queued") == 0
    assert not [s for s in samples if s.name.startswith("project_sync_queue_")]
    with app.app_context():
        db.engine.dispose()


@SQLITE_ONLY
def test_metrics_answers_while_the_database_is_down(
    tmp_path: Path, redis_url: str, client: FlaskClient, app: Flask
) -> None:
    unreachable = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    down = create_app(base_settings(unreachable, redis_url, str(tmp_path)))
    with down.app_context():
        metrics.record_delivery_received("push", "accepted")
    samples = scrape(down.test_client())
    assert value(samples, "project_sync_metrics_source_up", source="database") == 0
    assert value(samples, "project_sync_metrics_source_up", source="redis") == 1
    assert (
        value(samples, "project_sync_deliveries_received_total", event="push", outcome="accepted")
        == 1
    )
    assert value(samples, "project_sync_syncs_not_final", status="queued") is None


def never_run() -> None:
    """A job function these tests enqueue and no worker runs."""


@SQLITE_ONLY
def test_queue_gauges_read_rq_at_scrape_time(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        connection = redis_connection()
        queue = Queue(SYNCS_QUEUE, connection=connection)
        old = queue.enqueue(never_run, job_id="project-sync-test-old")
        queue.enqueue(never_run, job_id="project-sync-test-new")
        a_minute_ago = datetime.now(UTC) - timedelta(seconds=60)
        connection.hset(Job.key_for(old.id), "enqueued_at", utcformat(a_minute_ago))
        queue.enqueue_in(timedelta(hours=1), never_run)
    samples = scrape(client)
    assert value(samples, "project_sync_queue_depth", queue=SYNCS_QUEUE) == 2
    assert value(samples, "project_sync_queue_scheduled", queue=SYNCS_QUEUE) == 1
    age = value(samples, "project_sync_queue_oldest_job_age_seconds", queue=SYNCS_QUEUE)
    assert age is not None and 60 <= age < 120
    assert value(samples, "project_sync_queue_depth", queue=DELIVERIES_QUEUE) == 0


def test_unfinished_syncs_are_counted_from_the_database(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        installation = Installation(github_id=2**40, account_login="octo")
        repository = Repository(
            github_id=2**35,
            installation=installation,
            full_name="octo/hello",
            default_branch="main",
        )
        project = Project(repository=repository, branch="main")
        db.session.add_all([installation, repository, project])
        db.session.flush()
        for status in (SyncStatus.QUEUED, SyncStatus.QUEUED, SyncStatus.RUNNING, SyncStatus.FAILED):
            db.session.add(
                ProjectSync(project_id=project.id, trigger=SyncTrigger.PUSH, status=status)
            )
        db.session.commit()
    samples = scrape(client)
    assert value(samples, "project_sync_syncs_not_final", status="queued") == 2
    assert value(samples, "project_sync_syncs_not_final", status="running") == 1


@SQLITE_ONLY
def test_metrics_token_is_required_when_set(app_settings: dict[str, Any], redis_url: str) -> None:
    app = create_app({**app_settings, "METRICS_TOKEN": "s3cret-scrape-token"})
    client = app.test_client()
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert (
        client.get("/metrics", headers={"Authorization": "s3cret-scrape-token"}).status_code == 401
    )
    scrape(client, Authorization="Bearer s3cret-scrape-token")


@SQLITE_ONLY
def test_metrics_are_open_without_a_token(app: Flask, client: FlaskClient) -> None:
    assert app.config["METRICS_TOKEN"] is None
    scrape(client)


def test_metrics_token_setting() -> None:
    assert settings_from_environment({"METRICS_TOKEN": " abc "}) == {"METRICS_TOKEN": "abc"}
    assert settings_from_environment({"METRICS_TOKEN": "  "}) == {}

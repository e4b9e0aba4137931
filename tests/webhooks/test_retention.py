"""Retention: payloads cleared and rows deleted after their days, RQ job results and
progress streams trimmed to their TTLs, a bounded amount of work per run."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from rq import Queue
from sqlalchemy import select

from models import DeliveryStatus, MaintenanceCheckpoint, WebhookDelivery, db
from sync_jobs import defaults, retention
from sync_jobs.keys import SYNCS_QUEUE, sync_events_key
from sync_jobs.maintenance import passes_for
from sync_jobs.redis_client import redis_connection
from sync_jobs.retention import apply_retention
from webhook_app.config import settings_from_environment
from webhook_app.errors import ConfigError

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def add(days_ago: float, status: DeliveryStatus, **fields: Any) -> str:
    delivery_id = str(uuid.uuid4())
    db.session.add(
        WebhookDelivery(
            delivery_id=delivery_id,
            event="push",
            payload='{"ref": "refs/heads/main"}',
            status=status,
            received_at=NOW - timedelta(days=days_ago),
            **fields,
        )
    )
    db.session.commit()
    return delivery_id


def rows() -> dict[str, str | None]:
    db.session.expire_all()
    return {
        row.delivery_id: row.payload for row in db.session.scalars(select(WebhookDelivery))
    }


def test_payloads_are_cleared_and_rows_deleted_after_their_days(app_context: Flask) -> None:
    fresh = add(1, DeliveryStatus.PROCESSED)
    week_old = add(8, DeliveryStatus.PROCESSED)
    week_old_rejected = add(8, DeliveryStatus.REJECTED)
    week_old_waiting = add(8, DeliveryStatus.QUEUED)
    month_old = add(31, DeliveryStatus.IGNORED)
    month_old_waiting = add(31, DeliveryStatus.PENDING)

    report = apply_retention(redis_connection(), now=NOW)

    assert (report.deliveries_deleted, report.payloads_cleared) == (1, 2)
    left = rows()
    assert month_old not in left
    assert left[fresh] is not None and left[week_old_waiting] is not None
    assert left[week_old] is None and left[week_old_rejected] is None
    assert left[month_old_waiting] is not None  # never processed: kept whole
    row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=week_old))
    assert row is not None and row.status == DeliveryStatus.PROCESSED  # the record stays
    again = apply_retention(redis_connection(), now=NOW)
    assert again.total == 0


def test_a_run_works_in_batches_from_its_checkpoint(
    app_context: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "RETENTION_BATCH_ROWS", 3)
    monkeypatch.setattr(defaults, "RETENTION_MAX_ROWS", 7)
    for days in range(10):
        add(8 + days / 10, DeliveryStatus.PROCESSED)
    assert apply_retention(redis_connection(), now=NOW).payloads_cleared == 7
    assert apply_retention(redis_connection(), now=NOW).payloads_cleared == 3
    assert sum(payload is None for payload in rows().values()) == 10
    checkpoint = db.session.get(MaintenanceCheckpoint, retention.CHECKPOINT)
    assert checkpoint is not None and "processed" in checkpoint.value
    # A delivery that finishes after the checkpoint passed it keeps its payload until
    # its row goes (the checkpoint spares each run from reading cleared rows again).
    late = add(9.5, DeliveryStatus.FAILED)
    assert apply_retention(redis_connection(), now=NOW).payloads_cleared == 1
    assert rows()[late] is None


def test_job_results_and_progress_streams_are_trimmed(app_context: Flask) -> None:
    redis = redis_connection()
    limit = app_context.config["JOB_RESULT_TTL_SECONDS"]
    streams = app_context.config["SYNC_EVENTS_RETENTION_SECONDS"]
    finished = Queue(SYNCS_QUEUE, connection=redis).enqueue("builtins.len", "a")
    redis.expire(finished.key, defaults.RESULT_TTL_SECONDS)  # as RQ keeps a finished sync
    waiting = Queue(SYNCS_QUEUE, connection=redis).enqueue("builtins.len", "b", job_id="x")
    redis.xadd(sync_events_key(1), {"phase": "resolve"})
    redis.expire(sync_events_key(1), defaults.SYNC_EVENTS_TTL_SECONDS)
    redis.xadd(sync_events_key(2), {"phase": "resolve"})  # no TTL at all
    redis.xadd(sync_events_key(3), {"phase": "resolve"})
    redis.expire(sync_events_key(3), 5)  # already shorter
    redis.set("someone-else:key", "1", ex=10 * streams)

    report = apply_retention(redis, now=NOW)

    assert (report.jobs_trimmed, report.streams_trimmed) == (0, 2)  # job ids lack our prefix
    assert 0 < redis.ttl(sync_events_key(1)) <= streams
    assert 0 < redis.ttl(sync_events_key(2)) <= streams
    assert redis.ttl(sync_events_key(3)) <= 5
    assert redis.ttl("someone-else:key") > streams
    ours = Queue(SYNCS_QUEUE, connection=redis).enqueue(
        "builtins.len", "c", job_id="project-sync-sync-1-abc"
    )
    redis.expire(ours.key, defaults.RESULT_TTL_SECONDS)
    assert apply_retention(redis, now=NOW).jobs_trimmed == 1
    assert 0 < redis.ttl(ours.key) <= limit
    assert redis.ttl(waiting.key) == -1  # a waiting job is never given an end


def test_the_maintenance_process_runs_retention_on_its_interval(app: Flask) -> None:
    [entry] = [p for p in passes_for(app) if p.name == "retention"]
    assert entry.interval == app.config["RETENTION_INTERVAL_SECONDS"]
    result = app.test_cli_runner().invoke(args=["maintenance", "once", "retention"])
    assert result.exit_code == 0, result.output
    assert "retention: 0 repairs" in result.output


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DELIVERY_RETENTION_DAYS": "2"}, "at least 3 (GitHub's redelivery window)"),
        (
            {"DELIVERY_RETENTION_DAYS": "5", "DELIVERY_PAYLOAD_RETENTION_DAYS": "6"},
            "at least DELIVERY_PAYLOAD_RETENTION_DAYS (6)",
        ),
        ({"SYNC_EVENTS_RETENTION_SECONDS": "soon"}, "must be a positive whole number"),
    ],
)
def test_retention_settings_are_checked_at_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings_from_environment(environ)
    assert settings_from_environment({"JOB_RESULT_TTL_SECONDS": "60"}) == {
        "JOB_RESULT_TTL_SECONDS": 60
    }

"""Retention: what keeps stored deliveries, RQ's job results and progress streams bounded.

The maintenance process runs :func:`apply_retention` as its ``retention`` pass every
``RETENTION_INTERVAL_SECONDS``; each run does a bounded amount of work and the next
one carries on. What it applies (settings, defaults in :mod:`sync_jobs.defaults`):

- ``DELIVERY_PAYLOAD_RETENTION_DAYS``: a delivery in a final status received longer
  ago than this loses its payload (set to NULL); the row, with its status, reason and
  ids, stays. A checkpoint per status (``MaintenanceCheckpoint "retention"``) keeps
  each run from reading rows already cleared, so the cost follows new rows, not the
  table. A delivery that took longer than that to finish keeps its payload until its
  row goes.
- ``DELIVERY_RETENTION_DAYS``: a delivery in a final status received longer ago than
  this is deleted. Never less than GitHub's redelivery window, so a redelivered GUID
  is still known (the setting is checked at start).
- ``JOB_RESULT_TTL_SECONDS``: delivery jobs are written with it (see ``deliveries``);
  here every other finished or failed RQ job of ours (syncs, restores, which keep
  RQ's longer TTLs) and its results stream is trimmed to it. A job without a TTL is
  waiting or running and left alone.
- ``SYNC_EVENTS_RETENTION_SECONDS``: a sync's progress stream is given at most this
  long to live. The stream renews its own (longer) TTL on every event, so a running
  sync's stream is trimmed again on each run and lives this long after its last one.

Rows are cleared and deleted ``RETENTION_BATCH_ROWS`` at a time, each batch its own
short transaction (the receiver inserts into the same table), ``RETENTION_MAX_ROWS``
per run at most. Redis is walked with SCAN, never KEYS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from flask import current_app
from redis import Redis
from rq.job import Job
from rq.results import Result
from sqlalchemy import delete, select, update

from models import DeliveryStatus, MaintenanceCheckpoint, WebhookDelivery, db
from sync_jobs import defaults
from sync_jobs.keys import job_id_prefixes, sync_events_key

CHECKPOINT = "retention"
"""MaintenanceCheckpoint of this pass: ``{status: ISO time}``, the received_at up to
which deliveries of that status have had their payload cleared."""

FINAL_STATUSES = tuple(status for status in DeliveryStatus if status.is_final)


def _sync_events_prefix() -> str:
    """Every sync's progress stream key starts with this (spelled by ``keys``)."""
    return sync_events_key(0).removesuffix("0")


def _job_key_prefixes() -> tuple[str, ...]:
    """RQ's job hashes and results streams of our jobs (their ids start with the prefix)."""
    ids = job_id_prefixes()
    return tuple(Job.key_for(start) for start in ids) + tuple(Result.get_key(s) for s in ids)


@dataclass
class RetentionReport:
    """What one run did."""

    payloads_cleared: int = 0
    deliveries_deleted: int = 0
    jobs_trimmed: int = 0
    streams_trimmed: int = 0

    @property
    def total(self) -> int:
        return (
            self.payloads_cleared
            + self.deliveries_deleted
            + self.jobs_trimmed
            + self.streams_trimmed
        )


def apply_retention(redis: Redis, *, now: datetime | None = None) -> RetentionReport:
    """Apply every retention setting once (needs an app context); see the module."""
    config = current_app.config
    moment = now or datetime.now(UTC)
    report = RetentionReport()
    budget = defaults.RETENTION_MAX_ROWS
    report.deliveries_deleted = _delete_deliveries(
        moment - timedelta(days=config["DELIVERY_RETENTION_DAYS"]), budget
    )
    report.payloads_cleared = _clear_payloads(
        moment - timedelta(days=config["DELIVERY_PAYLOAD_RETENTION_DAYS"]),
        budget - report.deliveries_deleted,
    )
    report.jobs_trimmed, report.streams_trimmed = _trim_redis(
        redis,
        job_ttl=int(config["JOB_RESULT_TTL_SECONDS"]),
        stream_ttl=int(config["SYNC_EVENTS_RETENTION_SECONDS"]),
    )
    return report


def _delete_deliveries(cutoff: datetime, budget: int) -> int:
    """Delete final deliveries received before ``cutoff``, oldest first, in batches.

    One status at a time, so each batch is a range of the (status, received_at) index.
    """
    deleted = 0
    for status in FINAL_STATUSES:
        while deleted < budget:
            ids = list(
                db.session.scalars(
                    select(WebhookDelivery.id)
                    .where(WebhookDelivery.status == status, WebhookDelivery.received_at < cutoff)
                    .order_by(WebhookDelivery.received_at)
                    .limit(min(defaults.RETENTION_BATCH_ROWS, budget - deleted))
                )
            )
            if not ids:
                break
            db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
            db.session.commit()
            deleted += len(ids)
    return deleted


def _clear_payloads(cutoff: datetime, budget: int) -> int:
    """Clear the payload of final deliveries received before ``cutoff``, from each
    status's checkpoint on; move the checkpoints as batches commit."""
    checkpoint = db.session.get(MaintenanceCheckpoint, CHECKPOINT)
    if checkpoint is None:
        checkpoint = MaintenanceCheckpoint(name=CHECKPOINT, value={})
        db.session.add(checkpoint)
    marks = dict(checkpoint.value)
    cleared = 0
    for status in FINAL_STATUSES:
        since = datetime.fromisoformat(marks[status]) if status in marks else None
        while cleared < budget:
            query = select(WebhookDelivery.id, WebhookDelivery.received_at).where(
                WebhookDelivery.status == status,
                WebhookDelivery.received_at < cutoff,
                WebhookDelivery.payload.is_not(None),
            )
            if since is not None:
                query = query.where(WebhookDelivery.received_at >= since)
            rows = db.session.execute(
                query.order_by(WebhookDelivery.received_at).limit(
                    min(defaults.RETENTION_BATCH_ROWS, budget - cleared)
                )
            ).all()
            if not rows:
                break
            db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([row_id for row_id, _ in rows]))
                .values(payload=None)
            )
            since = rows[-1][1]
            marks[status] = since.isoformat()
            checkpoint.value = dict(marks)  # a new dict: JSON columns track assignment
            db.session.commit()
            cleared += len(rows)
    db.session.commit()
    return cleared


def _scan(redis: Redis) -> Iterator[list[bytes]]:
    """Every key of the database, a SCAN page at a time."""
    cursor = 0
    while True:
        cursor, keys = cast(
            tuple[int, list[bytes]], redis.scan(cursor, count=defaults.RETENTION_SCAN_COUNT)
        )
        if keys:
            yield keys
        if cursor == 0:
            return


def _trim_redis(redis: Redis, *, job_ttl: int, stream_ttl: int) -> tuple[int, int]:
    """Cap the TTL of our finished jobs at ``job_ttl`` and of every progress stream at
    ``stream_ttl``; return how many of each were trimmed."""
    job_prefixes = tuple(prefix.encode() for prefix in _job_key_prefixes())
    stream_prefix = _sync_events_prefix().encode()
    jobs = streams = 0
    for keys in _scan(redis):
        candidates = [
            key for key in keys if key.startswith(stream_prefix) or key.startswith(job_prefixes)
        ]
        if not candidates:
            continue
        with redis.pipeline(transaction=False) as pipe:
            for key in candidates:
                pipe.ttl(key)
            ttls = pipe.execute()
        with redis.pipeline(transaction=False) as pipe:
            for key, ttl in zip(candidates, ttls, strict=True):
                if key.startswith(stream_prefix):
                    # -2: gone meanwhile; -1: no TTL at all (never left unbounded).
                    if ttl == -1 or ttl > stream_ttl:
                        pipe.expire(key, stream_ttl)
                        streams += 1
                elif ttl > job_ttl:  # -1: waiting or running, not ours to end
                    pipe.expire(key, job_ttl)
                    jobs += 1
            pipe.execute()
    return jobs, streams


def run_retention_pass(redis: Redis) -> int:
    """The maintenance pass: apply retention once; how many rows and keys it changed."""
    return apply_retention(redis).total

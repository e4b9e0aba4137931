"""Enqueue stored deliveries that never reached the queue (Redis was down), and more.

A delivery is stored and committed before it is enqueued; if the enqueue fails the
receiver still answers 202 and the row waits here. The sweep takes deliveries still
``pending`` or ``queued`` after ``SWEEP_GRACE_SECONDS`` whose processing job is not
alive in RQ (never enqueued, lost with a Redis restart, failed without recording it,
or started by a worker that died) and enqueues them again. Processing is idempotent
and skips finished deliveries, so a sweep that races a slow job does no harm.

How it runs: the maintenance process (:mod:`sync_jobs.maintenance`) sweeps every
``SWEEP_INTERVAL_SECONDS``; ``flask deliveries sweep`` sweeps once by hand. Several
maintenance processes may run; a Redis lock lets one sweep at a time.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import AppGroup
from redis import Redis
from redis.exceptions import LockError, RedisError
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import SQLAlchemyError

from models import DeliveryStatus, WebhookDelivery, db
from models.base import discard_session
from sync_jobs import defaults
from sync_jobs.deliveries import deliveries_queue, enqueue_delivery
from sync_jobs.keys import delivery_job_id, sweeper_lock_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import job_is_live

log = logging.getLogger(__name__)

cli = AppGroup("deliveries", help="Stored webhook deliveries.")

DEAD_DELIVERY_JOB_SECONDS = defaults.DELIVERY_JOB_TIMEOUT_SECONDS * 2
"""A delivery job seen as started for longer than this lost its worker (RQ would have
killed it at its timeout)."""


def sweep_deliveries(
    redis: Redis, *, grace_seconds: float = defaults.SWEEP_GRACE_SECONDS
) -> int:
    """Enqueue every waiting delivery whose job is not alive; return how many were.

    Pages through the waiting deliveries oldest first, skipping those whose job is
    alive, so a backlog of live jobs never hides an orphan behind it; at most
    ``SWEEP_MAX_ENQUEUED`` are enqueued per sweep. Needs an app context. Raises
    ``RedisError`` or ``SQLAlchemyError`` if a service is still down; the next sweep
    tries again.
    """
    lock = redis.lock(
        sweeper_lock_key(), timeout=defaults.SWEEP_INTERVAL_SECONDS * 4, blocking=False
    )
    if not lock.acquire():
        return 0
    try:
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        queue = deliveries_queue(redis)
        result_ttl = current_app.config["JOB_RESULT_TTL_SECONDS"]
        enqueued = 0
        after: tuple[datetime, int] | None = None
        while enqueued < defaults.SWEEP_MAX_ENQUEUED:
            rows = _waiting_page(cutoff, after)
            if not rows:
                break
            for row in rows:
                job_id = delivery_job_id(row.delivery_id)
                if job_is_live(redis, job_id, started_grace_seconds=DEAD_DELIVERY_JOB_SECONDS):
                    continue
                enqueue_delivery(queue, delivery_id=row.delivery_id, result_ttl=result_ttl)
                row.status = DeliveryStatus.QUEUED
                enqueued += 1
            after = (rows[-1].received_at, rows[-1].id)
            db.session.commit()
        return enqueued
    finally:
        with suppress(LockError):  # expired and taken by another sweep: not ours to delete
            lock.release()


def _waiting_page(cutoff: datetime, after: tuple[datetime, int] | None) -> list[WebhookDelivery]:
    """One page of waiting deliveries older than ``cutoff``, after the keyset ``after``."""
    query = select(WebhookDelivery).where(
        WebhookDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.QUEUED)),
        WebhookDelivery.received_at <= cutoff,
    )
    if after is not None:
        received_at, row_id = after
        query = query.where(
            or_(
                WebhookDelivery.received_at > received_at,
                and_(WebhookDelivery.received_at == received_at, WebhookDelivery.id > row_id),
            )
        )
    return list(
        db.session.scalars(
            query.order_by(WebhookDelivery.received_at, WebhookDelivery.id).limit(
                defaults.SWEEP_BATCH_SIZE
            )
        )
    )


@cli.command("sweep")
@click.option(
    "--grace", type=float, default=defaults.SWEEP_GRACE_SECONDS, show_default=True,
    help="leave deliveries younger than this to their receiver",
)
def sweep_command(grace: float) -> None:
    """Enqueue stored deliveries that never reached the queue, once (the maintenance
    process does this continuously)."""
    try:
        count = sweep_deliveries(redis_connection(), grace_seconds=grace)
    except (RedisError, SQLAlchemyError) as exc:
        raise click.ClickException(f"sweep failed: {exc}") from exc
    finally:
        discard_session()
    click.echo(f"enqueued {count} waiting deliveries")

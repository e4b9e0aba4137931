"""Enqueue stored deliveries that never reached the queue (Redis was down), and more.

A delivery is stored and committed before it is enqueued; if the enqueue fails the
receiver still answers 202 and the row waits here. The sweep takes deliveries still
``pending`` or ``queued`` after ``SWEEP_GRACE_SECONDS`` whose processing job is not
alive in RQ (never enqueued, lost with a Redis restart, failed without recording it,
or started by a worker that died) and enqueues them again. Processing is idempotent
and skips finished deliveries, so a sweep that races a slow job does no harm.

How it runs: ``flask deliveries sweep --every 30`` is a small loop meant to be its own
Procfile process (``sweeper:``). It lives outside RQ on purpose: a schedule kept in
Redis is lost exactly when Redis restarts without persistence, which is when a sweep
is needed. Several sweepers may run; a Redis lock lets one sweep at a time.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import click
from flask.cli import AppGroup
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from models import DeliveryStatus, WebhookDelivery, db
from sync_jobs import defaults
from sync_jobs.deliveries import deliveries_queue, enqueue_delivery
from sync_jobs.keys import delivery_job_id, sweeper_lock_key
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import delete_if_equal, job_is_live

log = logging.getLogger(__name__)

cli = AppGroup("deliveries", help="Stored webhook deliveries.")

DEAD_DELIVERY_JOB_SECONDS = defaults.DELIVERY_JOB_TIMEOUT_SECONDS * 2
"""A delivery job seen as started for longer than this lost its worker (RQ would have
killed it at its timeout)."""


def sweep_deliveries(
    redis: Redis, *, grace_seconds: float = defaults.SWEEP_GRACE_SECONDS
) -> int:
    """Enqueue every waiting delivery whose job is not alive; return how many were.

    Needs an app context. Raises ``RedisError`` or ``SQLAlchemyError`` if a service is
    still down; the next sweep tries again.
    """
    token = f"{time.time()}"
    if not redis.set(sweeper_lock_key(), token, nx=True, ex=defaults.SWEEP_INTERVAL_SECONDS):
        return 0
    try:
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        rows = db.session.scalars(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.QUEUED)),
                WebhookDelivery.received_at <= cutoff,
            )
            .order_by(WebhookDelivery.received_at)
            .limit(defaults.SWEEP_BATCH_SIZE)
        ).all()
        queue = deliveries_queue(redis)
        enqueued = 0
        for row in rows:
            job_id = delivery_job_id(row.delivery_id)
            if job_is_live(redis, job_id, started_grace_seconds=DEAD_DELIVERY_JOB_SECONDS):
                continue
            enqueue_delivery(queue, delivery_id=row.delivery_id)
            row.status = DeliveryStatus.QUEUED
            enqueued += 1
        db.session.commit()
        return enqueued
    finally:
        delete_if_equal(redis, sweeper_lock_key(), token)


@cli.command("sweep")
@click.option("--every", type=float, default=None, help="keep sweeping, every N seconds")
@click.option(
    "--grace", type=float, default=defaults.SWEEP_GRACE_SECONDS, show_default=True,
    help="leave deliveries younger than this to their receiver",
)
def sweep_command(every: float | None, grace: float) -> None:
    """Enqueue stored deliveries that never reached the queue (once, or in a loop)."""
    redis = redis_connection()
    while True:
        try:
            count = sweep_deliveries(redis, grace_seconds=grace)
            if count or every is None:
                click.echo(f"enqueued {count} waiting deliveries")
        except (RedisError, SQLAlchemyError) as exc:
            db.session.rollback()
            log.warning("sweep failed, retrying in the next round: %s", exc)
            if every is None:
                raise click.ClickException(f"sweep failed: {exc}") from exc
        finally:
            db.session.remove()
        if every is None:
            return
        time.sleep(every)

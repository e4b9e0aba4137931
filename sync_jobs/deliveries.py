"""Processing stored webhook deliveries (RQ jobs), and putting them on the queue.

The receiver stores a delivery, commits, then calls :func:`enqueue_delivery`; the
sweeper calls the same function for deliveries whose enqueue never happened (Redis
was down). The job :func:`process_delivery` routes the stored payload to its handler
and records the outcome on the row.

Processing is idempotent at two levels: a delivery already processed or ignored is not
processed again (a retried job, a second enqueue by the sweeper), and every handler
itself upserts by GitHub ids, so even a forced rerun leaves the same rows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.utils import now
from sqlalchemy import select

from models import DeliveryStatus, WebhookDelivery, db
from models.base import discard_session
from sync_jobs import defaults, metrics
from sync_jobs.app_context import in_app_context
from sync_jobs.errors import DeliveryNotFoundError
from sync_jobs.keys import DELIVERIES_QUEUE, delivery_job_id
from sync_jobs.logs import log_context

PROCESS_DELIVERY = "sync_jobs.deliveries.process_delivery"
"""The job function by name: the web process enqueues it without importing handlers."""

_FINISHED = frozenset({DeliveryStatus.PROCESSED, DeliveryStatus.IGNORED, DeliveryStatus.FAILED})


def deliveries_queue(redis: Redis) -> Queue:
    return Queue(
        DELIVERIES_QUEUE, connection=redis, default_timeout=defaults.DELIVERY_JOB_TIMEOUT_SECONDS
    )


_RETRY = Retry(
    max=defaults.DELIVERY_MAX_ATTEMPTS - 1,
    interval=list(defaults.DELIVERY_RETRY_INTERVALS_SECONDS),
)
"""How RQ reruns a delivery job whose processing raised (the row counts the attempts)."""


def enqueue_delivery(queue: Queue, *, delivery_id: str) -> Job:
    """Queue the processing of one stored delivery, under the delivery's own job id.

    Enqueueing again under the same id replaces a finished or failed job of that
    delivery, which is what a sweep wants; a live one is never replaced because the
    sweeper checks first.

    RQ builds and serialises the job (``create_job``, ``to_dict``); this writes what
    ``Queue.enqueue_call`` would for a job without dependencies, in one round trip of
    three commands: register the queue, one HSET of the job, RPUSH of its id. RQ's own
    path sends six (MULTI, SADD, an HSET of the status alone, the HSET, RPUSH, EXEC),
    and parsing those replies is a third of the receiver's Redis time. No MULTI is
    needed: commands on one connection run in order, so a worker never pops an id whose
    hash is not written yet, and if the connection drops midway the row stays
    ``queued`` and the sweeper enqueues it again. ``test_receiver`` checks that the hash
    equals the one ``enqueue_call`` writes.
    """
    job = queue.create_job(
        PROCESS_DELIVERY,
        args=(delivery_id,),
        job_id=delivery_job_id(delivery_id),
        result_ttl=defaults.RESULT_TTL_SECONDS,
        failure_ttl=defaults.FAILURE_TTL_SECONDS,
        retry=_RETRY,
        status=JobStatus.QUEUED,
    )
    job.redis_server_version = queue.get_redis_server_version()
    job.enqueued_at = now()
    with queue.connection.pipeline(transaction=False) as pipe:
        pipe.sadd(queue.redis_queues_keys, queue.key)
        pipe.hset(job.key, mapping=job.to_dict())
        pipe.rpush(queue.key, job.id)
        pipe.execute()
    return job


def _record_failure(delivery_id: str, exc: BaseException) -> None:
    """Count a failed attempt in its own transaction; the last allowed one marks it failed.

    Raises if the database is unreachable; the row then stays queued, and the sweep
    enqueues it again once the job is no longer alive.
    """
    discard_session()
    row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
    if row is None:
        return
    row.attempts += 1
    row.status_reason = f"attempt {row.attempts} failed: {type(exc).__name__}: {exc}"[:2000]
    if row.attempts >= defaults.DELIVERY_MAX_ATTEMPTS:
        row.status = DeliveryStatus.FAILED
        row.processed_at = datetime.now(UTC)
    db.session.commit()
    if row.status is DeliveryStatus.FAILED:
        metrics.record_delivery_processed(row.event, str(row.status))


@in_app_context
def process_delivery(delivery_id: str) -> str:
    """Route a stored delivery to its handler and record the outcome on its row.

    A failure is recorded on the row and re-raised so RQ retries the job; after
    ``DELIVERY_MAX_ATTEMPTS`` the delivery is marked failed with the error in words.
    """
    with log_context(delivery_id=delivery_id):
        return _process(delivery_id)


def _process(delivery_id: str) -> str:
    from webhook_app import routing

    row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
    if row is None:
        raise DeliveryNotFoundError(f"delivery {delivery_id} is not stored")
    if row.status in _FINISHED:
        return f"delivery {delivery_id} was already {row.status}"
    handler = routing.fetch(row.event, row.action)
    try:
        if handler is None:
            row.status = DeliveryStatus.IGNORED
            row.status_reason = routing.describe(row.event, row.action)
        else:
            outcome = handler(json.loads(row.payload), delivery_id=delivery_id)
            # Handlers commit their own work (syncs need committed rows); re-read the
            # delivery in the session they left behind.
            row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
            assert row is not None
            row.status = outcome.status
            row.status_reason = outcome.reason
        row.attempts += 1
        row.processed_at = datetime.now(UTC)
        db.session.commit()
    except Exception as exc:
        _record_failure(delivery_id, exc)
        raise
    metrics.record_delivery_processed(row.event, str(row.status))
    return f"delivery {delivery_id}: {row.status} ({row.status_reason})"

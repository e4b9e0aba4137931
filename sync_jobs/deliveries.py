"""Processing stored webhook deliveries, and putting them on the queue.

The receiver stores a batch of deliveries, commits, then calls
:func:`enqueue_deliveries` for the new ones; the sweeper calls :func:`enqueue_delivery`
for deliveries whose enqueue never happened (Redis was down). Every delivery has its
own RQ job (``delivery_job_id``), so the sweeper can ask RQ whether it is alive. The
work is :func:`process_deliveries`: it routes each stored payload to its handler and
records the outcome on the row. Workers run it over a batch of jobs at once, in their
own process (:mod:`sync_jobs.worker`); the job function :func:`process_delivery` runs
it for one, under any RQ worker.

Processing is idempotent at two levels: a delivery already final is not processed
again (a retried job, a second enqueue by the sweeper), and every handler itself
upserts by GitHub ids, so even a forced rerun leaves the same rows.

Errors come in two kinds. Those the same payload would meet again (a field of the
wrong type, a value no column can hold, a repository GitHub says is gone) end the
delivery at once as ``failed`` with the reason; only outages (the database, Redis,
GitHub) and errors nobody foresaw are retried, up to ``DELIVERY_MAX_ATTEMPTS`` runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from sqlalchemy import select, update
from sqlalchemy.exc import DataError, InterfaceError, OperationalError, SQLAlchemyError

from models import DeliveryStatus, WebhookDelivery, db
from models.base import discard_session
from sync_jobs import defaults, metrics, payloads
from sync_jobs.errors import DeliveryNotFoundError, InvalidPayloadError, PermanentSyncError
from sync_jobs.keys import deliveries_queue_name, delivery_job_id
from sync_jobs.logs import log_context

PROCESS_DELIVERY = "sync_jobs.deliveries.process_delivery"
"""The job function by name: the web process enqueues it without importing handlers."""

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    InvalidPayloadError,
    PermanentSyncError,
    DataError,  # the database refused a value (out of range, NUL)
    TypeError,
    ValueError,  # bad JSON, a value psycopg cannot encode (a lone surrogate)
    LookupError,
    AttributeError,
    ArithmeticError,
    RecursionError,
)
"""Errors a rerun of the same payload would meet again: the delivery fails at once.
Anything else (database and Redis outages, GitHub failing, a job timeout, an error
nobody foresaw) is retried."""

_OUTAGES = (OperationalError, InterfaceError)
"""Database errors that say the database is unreachable, not that a value is wrong."""

MAX_REASON_LENGTH = 2000
"""A reason stored on a row is cut here."""


def deliveries_queue(redis: Redis) -> Queue:
    return Queue(
        deliveries_queue_name(),
        connection=redis,
        default_timeout=defaults.DELIVERY_JOB_TIMEOUT_SECONDS,
    )


_RETRY = Retry(
    max=defaults.DELIVERY_MAX_ATTEMPTS - 1,
    interval=list(defaults.DELIVERY_RETRY_INTERVALS_SECONDS),
)
"""How RQ reruns a delivery job after a transient error (the row counts the attempts)."""


def enqueue_deliveries(
    queue: Queue,
    delivery_ids: Sequence[str],
    *,
    result_ttl: int = defaults.JOB_RESULT_TTL_SECONDS,
    pipeline: Pipeline | None = None,
) -> list[Job]:
    """Queue the processing of stored deliveries, each under the delivery's own job id,
    in one round trip: RQ's ``enqueue_many`` into one pipeline without MULTI.

    Enqueueing again under the same id replaces a finished or failed job of that
    delivery, which is what a sweep wants; a live one is never replaced because the
    sweeper checks first. ``result_ttl`` is how long RQ keeps the finished job (the
    row is the lasting record; ``JOB_RESULT_TTL_SECONDS`` is the setting).

    RQ writes, per job, an HSET of the status alone, the HSET of the job and an RPUSH,
    and one SADD registering the queue. No MULTI is needed: commands on one connection
    run in order, so a worker never pops an id whose hash is not written yet, and if the
    connection drops midway the rows stay ``queued`` and the sweeper enqueues them
    again. A hand-written SADD + HSET + RPUSH (no status HSET) was measured against it
    (bench: 3,000 jobs, CPU per job, two runs): 111-145 vs 139-152 µs alone, 72-95 vs
    86-92 µs in batches of 8, 65-66 vs 76-85 µs in batches of 32. That is at most
    ~25 µs of a delivery's ~1 ms, so RQ's own API is used. With ``pipeline`` the
    commands are added to it and the caller executes it (and may add its own).
    """
    pipe = pipeline if pipeline is not None else queue.connection.pipeline(transaction=False)
    jobs = queue.enqueue_many(
        [
            Queue.prepare_data(
                PROCESS_DELIVERY,
                args=(delivery_id,),
                job_id=delivery_job_id(delivery_id),
                result_ttl=result_ttl,
                failure_ttl=defaults.FAILURE_TTL_SECONDS,
                retry=_RETRY,
            )
            for delivery_id in delivery_ids
        ],
        pipeline=pipe,
    )
    if pipeline is None:
        with pipe:
            pipe.execute()
    return jobs


def enqueue_delivery(
    queue: Queue, *, delivery_id: str, result_ttl: int = defaults.JOB_RESULT_TTL_SECONDS
) -> Job:
    """Queue one stored delivery (the sweeper's way): :func:`enqueue_deliveries` of one.
    ``test_receiver`` checks that the hash equals the one ``enqueue_call`` writes."""
    [job] = enqueue_deliveries(queue, [delivery_id], result_ttl=result_ttl)
    return job


# --- processing ----------------------------------------------------------------------------


class Verdict(StrEnum):
    """What the job of one processed delivery should become."""

    DONE = "done"  # the row holds a final status (or had one already)
    RETRY = "retry"  # a transient error; run the job again later
    FAILED = "failed"  # nothing more to try: retries used up, or the row is not stored


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery's processing, as the job's result or its error."""

    delivery_id: str
    verdict: Verdict
    message: str
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    """The columns processing reads, detached from the session (handlers commit)."""

    id: int
    event: str
    action: str | None
    payload: str | None
    form_encoded: bool
    status: DeliveryStatus
    attempts: int


def storable_reason(text: str) -> str:
    """``text`` made safe for a text column and cut to length: exception messages can
    quote a payload's NUL or lone surrogate, which would fail the row's own UPDATE."""
    return payloads.escape_unstorable(text)[:MAX_REASON_LENGTH]


def _load(delivery_ids: Sequence[str]) -> dict[str, _Stored]:
    rows = db.session.execute(
        select(
            WebhookDelivery.delivery_id,
            WebhookDelivery.id,
            WebhookDelivery.event,
            WebhookDelivery.action,
            WebhookDelivery.payload,
            WebhookDelivery.form_encoded,
            WebhookDelivery.status,
            WebhookDelivery.attempts,
        ).where(WebhookDelivery.delivery_id.in_(delivery_ids))
    )
    stored = {row[0]: _Stored(*row[1:]) for row in rows}
    db.session.rollback()  # end the read; each handler runs in its own transaction
    return stored


@contextlib.contextmanager
def _time_limit(seconds: float | None, delivery_id: str) -> Iterator[None]:
    """RQ's job timeout (SIGALRM) around one delivery of a batch; none when RQ itself
    runs the job (its own timeout is already armed, and a second alarm would reset it)."""
    if seconds is None:
        yield
        return
    with UnixSignalDeathPenalty(
        int(seconds), JobTimeoutException, job_id=delivery_job_id(delivery_id)
    ):
        yield


def _record_failure(delivery_id: str, exc: BaseException) -> bool:
    """Count a failed attempt in its own transaction; the last allowed one marks it
    failed. Returns whether it did.

    Raises if the database is unreachable; the row then stays queued, and the job's
    retry (or the sweep, once the job is no longer alive) brings it back.
    """
    discard_session()
    row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
    if row is None:
        return False
    row.attempts += 1
    row.status_reason = storable_reason(
        f"attempt {row.attempts} failed: {type(exc).__name__}: {exc}"
    )
    if row.attempts >= defaults.DELIVERY_MAX_ATTEMPTS:
        row.status = DeliveryStatus.FAILED
        row.processed_at = datetime.now(UTC)
    db.session.commit()
    if row.status is DeliveryStatus.FAILED:
        metrics.record_delivery_processed(row.event, str(row.status))
        return True
    return False


def _permanent_reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidPayloadError | PermanentSyncError):
        return f"not retried, the payload cannot be processed: {exc}"
    return f"not retried, the same payload fails the same way: {type(exc).__name__}: {exc}"


def _run_handler(row: _Stored, delivery_id: str, timeout: float | None) -> tuple[str, str]:
    """Route one stored delivery and run its handler; the status and reason to record."""
    from sync_jobs import routing

    handler = routing.fetch(row.event, row.action)
    if handler is None:
        return DeliveryStatus.IGNORED, routing.describe(row.event, row.action)
    if row.payload is None:
        raise InvalidPayloadError("the payload is no longer stored (retention)")
    with _time_limit(timeout, delivery_id):
        document = payloads.read_document(
            payloads.document_text(row.payload, form_encoded=row.form_encoded)
        )
        outcome = handler(document, delivery_id=delivery_id)
        db.session.commit()  # handlers commit their own work; this ends their transaction
    return outcome.status, outcome.reason


def _process_one(
    row: _Stored | None, delivery_id: str, timeout: float | None
) -> tuple[Attempt, dict[str, Any] | None]:
    """Process one delivery; its attempt, and the row update to record (if any)."""
    if row is None:
        error = DeliveryNotFoundError(f"delivery {delivery_id} is not stored")
        return Attempt(delivery_id, Verdict.FAILED, str(error), error), None
    if row.status.is_final:
        return Attempt(delivery_id, Verdict.DONE, f"delivery was already {row.status}"), None
    try:
        status, reason = _run_handler(row, delivery_id, timeout)
    except PERMANENT_ERRORS as exc:
        discard_session()
        status, reason = DeliveryStatus.FAILED, _permanent_reason(exc)
    except Exception as exc:
        try:
            gave_up = _record_failure(delivery_id, exc)
        except SQLAlchemyError:
            discard_session()
            gave_up = False
        verdict = Verdict.FAILED if gave_up else Verdict.RETRY
        return Attempt(delivery_id, verdict, f"{type(exc).__name__}: {exc}", exc), None
    reason = storable_reason(reason)
    update_row = {
        "id": row.id,
        "status": status,
        "status_reason": reason,
        "attempts": row.attempts + 1,
        "processed_at": datetime.now(UTC),
    }
    return Attempt(delivery_id, Verdict.DONE, f"{status} ({reason})"), update_row


def _write(items: list[dict[str, Any]]) -> None:
    db.session.execute(update(WebhookDelivery), items)
    db.session.commit()


def _write_outcomes(updates: list[dict[str, Any]]) -> tuple[set[int], SQLAlchemyError | None]:
    """Record final statuses, all in one transaction when possible; return the ids of
    the rows left unrecorded because the database went away, and its error.

    One UPDATE of many rows and one commit: a commit waits for the disk, and one per
    delivery would cost more than the processing. If the batch is refused for a reason
    other than an outage, each row is tried alone so one bad row holds up no other;
    a row the database still refuses is marked failed with a reason of our own.
    """
    if not updates:
        return set(), None
    try:
        _write(updates)
        return set(), None
    except _OUTAGES as exc:
        discard_session()
        return {item["id"] for item in updates}, exc
    except SQLAlchemyError:
        discard_session()
    lost: set[int] = set()
    outage: SQLAlchemyError | None = None
    for item in updates:
        try:
            _write([item])
            continue
        except _OUTAGES as exc:
            discard_session()
            lost.add(item["id"])
            outage = exc
            continue
        except SQLAlchemyError as exc:
            discard_session()
            reason = f"the outcome could not be recorded: {type(exc).__name__}"
        try:
            _write([{**item, "status": DeliveryStatus.FAILED, "status_reason": reason}])
        except SQLAlchemyError as exc:
            discard_session()
            lost.add(item["id"])
            outage = exc
    return lost, outage


def process_deliveries(
    delivery_ids: Sequence[str],
    *,
    timeout: float | None = None,
    keep_going: Callable[[], bool] = lambda: True,
) -> list[Attempt]:
    """Process stored deliveries in order; one attempt for each processed, in order.

    Needs an app context. ``timeout`` bounds each delivery (RQ's job timeout; leave it
    None when RQ runs the job itself). ``keep_going`` is asked before each delivery
    after the first; once it says no, the rest are left out of the result, for the
    caller to queue again. The rows are read in one query and the final statuses
    written in one transaction at the end; a worker killed before that leaves the rows
    queued, and their rerun finds the handlers' work already done.
    """
    try:
        stored = _load(delivery_ids)
    except SQLAlchemyError as exc:
        discard_session()
        message = f"{type(exc).__name__}: {exc}"
        return [Attempt(d, Verdict.RETRY, message, exc) for d in delivery_ids]
    attempts: list[Attempt] = []
    recorded: list[tuple[int, str, dict[str, Any]]] = []  # attempt index, event, update
    for delivery_id in delivery_ids:
        if attempts and not keep_going():
            break
        row = stored.get(delivery_id)
        with log_context(delivery_id=delivery_id):
            attempt, update_row = _process_one(row, delivery_id, timeout)
        if update_row is not None and row is not None:
            recorded.append((len(attempts), row.event, update_row))
        attempts.append(attempt)
    lost, outage = _write_outcomes([item for _, _, item in recorded])
    for index, event, item in recorded:
        if item["id"] in lost:
            message = f"the outcome could not be recorded: {outage}"
            attempts[index] = Attempt(attempts[index].delivery_id, Verdict.RETRY, message, outage)
        else:
            metrics.record_delivery_processed(event, str(item["status"]))
    return attempts


def process_delivery(delivery_id: str) -> str:
    """The RQ job of one delivery: process it and record the outcome on its row.

    A transient failure is recorded on the row and raised, so RQ retries the job;
    after ``DELIVERY_MAX_ATTEMPTS`` the delivery is marked failed with the error in
    words. A permanent one is recorded as failed at once and the job ends normally.
    """
    [attempt] = process_deliveries([delivery_id])
    if attempt.error is not None:
        raise attempt.error
    return f"delivery {delivery_id}: {attempt.message}"

"""The worker process (the Procfile's ``worker``, started as ``python -m worker``).

The top-level ``worker.py`` builds the app once from the environment, as ``wsgi.py``
does for gunicorn, so the worker uses the same settings (``REDIS_URL`` from ``.env``
included) as the web process, and hands it to :func:`main`: this package never builds
an app itself. :func:`main` listens on every queue named in :mod:`sync_jobs.keys` with
RQ's scheduler for delayed jobs (postponed and rescheduled syncs). Syncs and
maintenance jobs each run in a forked work horse that inherits the app (a sync can run
for minutes and use much memory; a crash or a job timeout takes only the horse).

Every job runs inside the worker's app context, pushed by the worker around the job
(:class:`AppWorker`): in the horse, and around a batch of deliveries in this process.
Job functions take no app of their own, so a caller that already has an app context
(``flask sync``, a test) calls them directly.

A horse starts warm (:func:`prepare_horses`, before the first fork): the job modules
are imported, the app and its engine built, and githubkit's lazily loaded REST modules
and request validators loaded (:func:`sync_jobs.connector.warm_up`), the mappers
configured, and all of it frozen out of the collector's reach. A sync's first line then
runs about 12 ms after the worker takes its job (6 of them the fork) and its first
GitHub call imports nothing, where every horse used to spend 0.2 to 0.3 s importing
(``bench/job_cost.py``). Forking stays: a sync that crashes, leaks or outlives its
timeout takes only its horse, never the worker. What must not cross the fork is
reset in the horse: SQLAlchemy's pool is forgotten (:meth:`SyncWorker.main_work_horse`)
and redis-py's pools see the new pid and open their own connections.

Deliveries run in the worker's own process, many at a time: a fork per delivery
costs more than the delivery (RQ's fork and bookkeeping held a worker near 7/s), and
so does RQ's per-job bookkeeping even without one (about 360 empty jobs/s). When the
worker takes a delivery job it takes up to ``DELIVERY_BATCH_SIZE`` more from the
queue with one LPOP, marks them started in one pipeline, processes them with
:func:`sync_jobs.deliveries.process_deliveries` (each under the job's timeout, their
outcomes written in one transaction) and ends them in one more pipeline: finished
(kept ``JOB_RESULT_TTL_SECONDS``), scheduled again by the job's ``Retry`` after a
transient error, or failed. Each delivery keeps its own RQ job, so the sweeper's view
(``job_is_live``) is unchanged: a claimed job is ``started`` from the moment it is
taken, and one whose worker died is swept again after ``DEAD_DELIVERY_JOB_SECONDS``.
RQ's started-job registry and results stream are not written for these jobs: the
delivery row is the record.

It outlives Redis: RQ's ``Worker.work`` returns (or raises) when Redis goes away
mid-loop, and its scheduler process dies with the outage. :func:`main` then waits
for Redis with backoff, says so once in the log, and starts a new worker (and with
it a new scheduler). A database outage needs nothing here: jobs fail and reschedule
themselves, or the repair pass brings them back.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib
import logging
import signal
import time
import uuid
from contextlib import AbstractContextManager, nullcontext, suppress
from types import FrameType
from typing import Any, cast

from flask import Flask, current_app, has_app_context
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.utils import now, utcformat
from rq.worker import BaseWorker, WorkerStatus
from sqlalchemy import select
from sqlalchemy.orm import configure_mappers

from models import db
from models.base import Base
from sync_jobs import defaults
from sync_jobs.deliveries import PROCESS_DELIVERY, Attempt, Verdict, process_deliveries
from sync_jobs.keys import deliveries_queue_name, key_prefix, queue_names
from sync_jobs.logs import configure_logging
from sync_jobs.redis_client import redis_connection

log = logging.getLogger(__name__)

HORSE_MODULES = ("sync_jobs.sync_job", "sync_jobs.pipeline", "sync_jobs.restore")
"""What a sync job imports (the last two lazily, inside functions)."""


@functools.cache
def prepare_horses(app: Flask) -> None:
    """Load, once in the worker, what every forked horse would otherwise load itself."""
    for module in HORSE_MODULES:
        importlib.import_module(module)
    with app.app_context():
        _warm_orm()
    # Imported with the job modules, not with this one: delivery batches need no GitHub.
    from sync_jobs.connector import warm_up

    warm_up()
    # What is loaded now lives as long as the worker. Frozen, the collector never walks
    # it again, in the worker or in a horse, where walking it would write to (and so
    # copy) every page it shares with the worker.
    gc.freeze()


def _warm_orm() -> None:
    """Build the engine, configure the mappers and compile a SELECT of every model.

    SQLAlchemy configures mappers, loader strategies and column comparators on their
    first use; a horse would redo it (tens of milliseconds) for every sync."""
    configure_mappers()
    dialect = db.engine.dialect
    for mapper in Base.registry.mappers:
        select(mapper).compile(dialect=dialect)


class AppWorker(BaseWorker):
    """An RQ worker that runs every job inside its app's context.

    RQ calls a job function with nothing around it; the app (settings, database, Redis
    clients) is the worker's, built once at start and passed in as ``app``. The context
    is pushed for each job and popped after it, which also ends the job's database
    session. ``app`` may be left out only where no job runs (RQ builds workers itself
    to list them).
    """

    def __init__(self, *args: Any, app: Flask | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def job_context(self) -> AbstractContextManager[object]:
        """The app context a job runs in.

        A worker run inside its own app's context (in-process, by a test or a command
        that has one) reuses it, as a job function called directly would."""
        if self.app is None:
            raise RuntimeError(f"{type(self).__name__} runs jobs only with its app: pass app=")
        if has_app_context() and cast(Any, current_app)._get_current_object() is self.app:
            return nullcontext()
        return self.app.app_context()

    def perform_job(self, job: Job, queue: Queue) -> bool:
        with self.job_context():
            return super().perform_job(job, queue)


class SyncWorker(AppWorker, Worker):
    """RQ's worker, quicker to notice what an outage broke.

    RQ runs its maintenance (restarting a scheduler that died, cleaning registries)
    only between two waits for a job, every 10 minutes, and an idle worker waits up to
    ``worker_ttl - 15`` seconds (405 by default). Both are shortened so a scheduler
    killed by a Redis outage is back within ``WORKER_MAINTENANCE_SECONDS``. A
    registration lost with a Redis restart is written again at the next heartbeat,
    so the worker shows in RQ's worker list (and dashboards) again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", defaults.WORKER_MAINTENANCE_SECONDS)
        kwargs.setdefault("worker_ttl", defaults.WORKER_MAINTENANCE_SECONDS + 15)
        super().__init__(*args, **kwargs)
        # Named here: the name follows the app's key prefix, and RQ calls execute_job
        # outside an app context.
        self.deliveries_queue = deliveries_queue_name()

    delivery_batch_size = defaults.DELIVERY_BATCH_SIZE
    delivery_batch_seconds = defaults.DELIVERY_BATCH_SECONDS

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is None and not self.is_horse and not self.connection.exists(self.key):
            log.warning("worker registration vanished (Redis restarted empty?); registering again")
            self.register_birth()
        super().heartbeat(timeout, pipeline)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Deliveries in this process, a batch at a time; everything else in a horse."""
        if _is_delivery(job) and queue.name == self.deliveries_queue:
            self.run_delivery_batch(job, queue)
        else:
            super().execute_job(job, queue)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        if self.app is not None:
            prepare_horses(self.app)  # a no-op after the first time (main() does it at start)
        super().fork_work_horse(job, queue)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # The horse inherits the database connections this process opened for
        # deliveries; using a socket the parent also uses corrupts both sides'
        # sessions, so the horse forgets them (without closing them) and opens its own.
        with self.job_context():
            db.engine.dispose(close=False)
        super().main_work_horse(job, queue)

    # --- deliveries ---------------------------------------------------------------------

    def run_delivery_batch(self, first: Job, queue: Queue) -> None:
        """Process ``first`` and the delivery jobs queued behind it, in this process."""
        jobs = [first, *self._claim_deliveries(queue)]
        self._mark_started(jobs, queue)
        deadline = time.monotonic() + self.delivery_batch_seconds
        timeout = first.timeout or defaults.DELIVERY_JOB_TIMEOUT_SECONDS
        with self.job_context():
            attempts = process_deliveries(
                [job.args[0] for job in jobs],
                timeout=timeout,
                keep_going=lambda: not self._stop_requested and time.monotonic() < deadline,
            )
        with self.connection.pipeline() as pipe:
            for job, attempt in zip(jobs, attempts, strict=False):
                _end_delivery_job(job, attempt, queue, pipe)
            left = [job.id for job in jobs[len(attempts) :]]
            for job_id in left:
                pipe.hset(Job.key_for(job_id), "status", JobStatus.QUEUED)
            if left:
                pipe.lpush(queue.key, *reversed(left))  # back at the front, in order
            self.set_current_job_id(None, pipeline=pipe)
            pipe.execute()
        self.set_state(WorkerStatus.IDLE)
        counts: dict[str, int] = {}
        for attempt in attempts:
            counts[attempt.verdict] = counts.get(attempt.verdict, 0) + 1
        log.info(
            "processed %d deliveries (%s)%s",
            len(attempts),
            ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items())),
            f"; {len(left)} queued again" if left else "",
        )

    def _claim_deliveries(self, queue: Queue) -> list[Job]:
        """Up to ``delivery_batch_size - 1`` more delivery jobs from the front of the
        queue; anything else found there goes back to the front for the normal loop."""
        popped = self.connection.lpop(queue.key, self.delivery_batch_size - 1)
        ids = [item.decode() for item in cast(list[bytes], popped or [])]
        if not ids:
            return []
        fetched = self.job_class.fetch_many(
            ids, connection=self.connection, serializer=self.serializer
        )
        claimed: list[Job] = []
        for index, job in enumerate(fetched):
            if job is None:
                continue  # deleted while queued, as RQ's own dequeue skips it
            if not _is_delivery(job):
                self.connection.lpush(queue.key, *reversed(ids[index:]))
                break
            claimed.append(job)
        return claimed

    def _mark_started(self, jobs: list[Job], queue: Queue) -> None:
        """What RQ writes before it runs a job, for every job of the batch at once."""
        with self.connection.pipeline() as pipe:
            for job in jobs:
                job.prepare_for_execution(self.name, pipe)
            if len(self.queues) == 1:  # RQ moved the first job to its intermediate queue
                pipe.lrem(queue.intermediate_queue_key, 1, jobs[0].id)
            self.set_current_job_id(jobs[0].id, pipeline=pipe)
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            ttl = int(self.delivery_batch_seconds) + int(jobs[0].timeout or 0) + 60
            self.heartbeat(ttl, pipeline=pipe)
            pipe.execute()


def _is_delivery(job: Job) -> bool:
    """A job this worker can run in a delivery batch: ``process_delivery(delivery_id)``."""
    return (
        job.func_name == PROCESS_DELIVERY
        and len(job.args) == 1
        and isinstance(job.args[0], str)
        and not job.kwargs
    )


def _end_delivery_job(job: Job, attempt: Attempt, queue: Queue, pipe: Any) -> None:
    """Finish, reschedule or fail one job of a batch, as RQ would for its outcome."""
    ended = utcformat(now())
    if attempt.verdict is Verdict.DONE:
        job.set_status(JobStatus.FINISHED, pipeline=pipe)
        pipe.hset(job.key, "ended_at", ended)
        ttl = job.result_ttl if job.result_ttl is not None else defaults.JOB_RESULT_TTL_SECONDS
        job.cleanup(ttl, pipeline=pipe, remove_from_queue=False)
        if ttl != 0:
            queue.finished_job_registry.add(job, ttl, pipeline=pipe)
        return
    if attempt.verdict is Verdict.RETRY and job.retries_left:
        job.retry(queue, pipe)
        return
    job.set_status(JobStatus.FAILED, pipeline=pipe)
    pipe.hset(job.key, "ended_at", ended)
    queue.failed_job_registry.add(
        job, ttl=job.failure_ttl, exc_string=attempt.message, pipeline=pipe
    )


def wait_for_redis(connection: Redis, stopping: list[bool]) -> bool:
    """Block until Redis answers a PING (backoff between tries); False if stopping."""
    delays = defaults.REDIS_RECONNECT_BACKOFF_SECONDS
    attempt = 0
    while not stopping:
        try:
            connection.ping()
            return True
        except RedisError as exc:
            if attempt == 0:
                log.warning("Redis is unreachable (%s); waiting for it to come back", exc)
            time.sleep(delays[min(attempt, len(delays) - 1)])
            attempt += 1
    return False


def _forget(worker: Worker) -> None:
    """Record the old worker's death so a new one may register under the same name."""
    with suppress(RedisError):
        worker.register_death()


def main(app: Flask, argv: list[str] | None = None) -> None:
    """Run workers for ``app`` (built by the caller) until stopped; see the module."""
    parser = argparse.ArgumentParser(description="Run a Project Sync RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    options = parser.parse_args(argv)

    configure_logging(app.config.get("LOG_LEVEL", "INFO"), app.config.get("LOG_FORMAT", "json"))
    connection = redis_connection(app)
    prepare_horses(app)
    stopping: list[bool] = []

    def stop_waiting(signum: int, frame: FrameType | None) -> None:
        stopping.append(True)

    while True:
        with app.app_context():
            worker = SyncWorker(
                [Queue(name, connection=connection) for name in queue_names()],
                connection=connection,
                # RQ's list of workers is one for the whole Redis: the prefix says whose.
                name=options.name or f"{key_prefix()}-{uuid.uuid4().hex}",
                app=app,
            )
        try:
            worker.work(with_scheduler=True, burst=options.burst)
        except RedisError as exc:
            log.warning("worker lost Redis: %s", exc)
        if options.burst or worker._stop_requested or worker._shutdown_requested_date:
            return
        # RQ's signal handlers belong to the worker that ended; a stop now ends the wait.
        signal.signal(signal.SIGTERM, stop_waiting)
        signal.signal(signal.SIGINT, stop_waiting)
        time.sleep(defaults.REDIS_RECONNECT_BACKOFF_SECONDS[0])  # never a tight restart loop
        if not wait_for_redis(connection, stopping):
            return
        _forget(worker)
        log.warning("starting a new worker after the last one stopped on an error")


if __name__ == "__main__":
    raise SystemExit("The worker needs its app: start it with `python -m worker` (worker.py).")

"""The worker process: ``python -m sync_jobs.worker`` (the Procfile's ``worker``).

Builds the app once from the environment, so the worker uses the same settings
(``REDIS_URL`` from ``.env`` included) as the web process, and listens on every queue
named in :mod:`sync_jobs.keys` with RQ's scheduler for delayed jobs (postponed and
rescheduled syncs). Each job runs in a forked work horse that inherits the app; jobs
enter its app context themselves.

It outlives Redis: RQ's ``Worker.work`` returns (or raises) when Redis goes away
mid-loop, and its scheduler process dies with the outage. :func:`main` then waits
for Redis with backoff, says so once in the log, and starts a new worker (and with
it a new scheduler). A database outage needs nothing here: jobs fail and reschedule
themselves, or the repair pass brings them back.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from contextlib import suppress
from types import FrameType
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker

from sync_jobs import app_context, defaults
from sync_jobs.keys import ALL_QUEUES
from sync_jobs.logs import configure_logging
from sync_jobs.redis_client import redis_connection

log = logging.getLogger(__name__)


class SyncWorker(Worker):
    """RQ's worker, quicker to notice what an outage broke.

    RQ runs its maintenance (restarting a scheduler that died, cleaning registries)
    only between two waits for a job, every 10 minutes, and an idle worker waits up to
    ``worker_ttl - 15`` seconds (405 by default). Both are shortened so a scheduler
    killed by a Redis outage is back within ``WORKER_MAINTENANCE_SECONDS``. A
    registration lost with a Redis restart is written again at the next heartbeat,
    so the worker shows in RQ's worker list (and dashboards) again.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("maintenance_interval", defaults.WORKER_MAINTENANCE_SECONDS)
        kwargs.setdefault("worker_ttl", defaults.WORKER_MAINTENANCE_SECONDS + 15)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is None and not self.is_horse and not self.connection.exists(self.key):
            log.warning("worker registration vanished (Redis restarted empty?); registering again")
            self.register_birth()
        super().heartbeat(timeout, pipeline)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a Project Sync RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    options = parser.parse_args(argv)

    app = app_context.worker_app()
    configure_logging(app.config.get("LOG_LEVEL", "INFO"), app.config.get("LOG_FORMAT", "json"))
    connection = redis_connection(app)
    stopping: list[bool] = []

    def stop_waiting(signum: int, frame: FrameType | None) -> None:
        stopping.append(True)

    while True:
        worker = SyncWorker(
            [Queue(name, connection=connection) for name in ALL_QUEUES],
            connection=connection,
            name=options.name,
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
    main()

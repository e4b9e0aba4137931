"""The worker process: ``python -m sync_jobs.worker`` (the Procfile's ``worker``).

Builds the app once from the environment, so the worker uses the same settings
(``REDIS_URL`` from ``.env`` included) as the web process, and listens on every queue
named in :mod:`sync_jobs.keys` with RQ's scheduler for delayed jobs. Each job runs in
a forked work horse that inherits the app; jobs enter its app context themselves.
"""

from __future__ import annotations

import argparse
import logging

from rq import Queue, Worker

from sync_jobs import app_context
from sync_jobs.keys import ALL_QUEUES
from sync_jobs.redis_client import redis_connection


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a Project Sync RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    options = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = app_context.worker_app()
    connection = redis_connection(app)
    queues = [Queue(name, connection=connection) for name in ALL_QUEUES]
    worker = Worker(queues, connection=connection, name=options.name)
    worker.work(with_scheduler=True, burst=options.burst)


if __name__ == "__main__":
    main()

"""Delivery processing benchmark: deliveries per second of one worker, by kind of worker.

``python -m bench.deliveries`` (``--help`` for knobs). It creates its own PostgreSQL
database and redis-server (``bench.webhooks.Services``), tracks ``--repositories``
projects of one installation, stores ``--deliveries`` signed-looking push deliveries
spread over them with their jobs queued (as the receiver leaves them), and lets one
worker process drain the queue in burst mode, timed from the first job to the last:

- ``fork``: RQ's ``Worker``, a work horse forked per job (what ran deliveries before);
- ``simple``: RQ's ``SimpleWorker``, every job in the worker process, RQ's bookkeeping
  per job;
- ``batch``: ``python -m worker``'s ``SyncWorker``, delivery jobs taken and
  processed a batch at a time in the worker process.

Each delivery requests a sync of its project (coalesced into the queued one, as in a
burst); syncs are not run. Every delivery must end ``processed``, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from bench.webhooks import PAYLOAD, ROOT, Services, wait_for_quiet_machine

WORKERS = {
    "fork": "rq.Worker",
    "simple": "rq.SimpleWorker",
    "batch": "sync_jobs.worker.SyncWorker",
}

_DRAIN = """
import logging, sys, time
from importlib import import_module
from rq import Queue
from sync_jobs.keys import deliveries_queue_name
from sync_jobs.redis_client import redis_connection
from sync_jobs.worker import AppWorker
from webhook_app import create_app

module, name = sys.argv[1].rsplit(".", 1)
worker_class = getattr(import_module(module), name)
if not issubclass(worker_class, AppWorker):  # RQ's own: each job in the app's context
    worker_class = type(name, (AppWorker, worker_class), {})
logging.disable(logging.INFO)
app = create_app()
connection = redis_connection(app)
with app.app_context():
    queue = Queue(deliveries_queue_name(), connection=connection)
started = time.perf_counter()
worker_class([queue], connection=connection, app=app).work(burst=True, logging_level="WARNING")
print("ELAPSED", time.perf_counter() - started)
"""


def _prepare(services: Services, deliveries: int, repositories: int) -> None:
    """Tracked projects, stored deliveries, queued jobs: what a burst leaves behind."""
    from models import DeliveryStatus, Installation, Project, Repository, WebhookDelivery, db
    from sync_jobs.deliveries import deliveries_queue, enqueue_delivery
    from sync_jobs.redis_client import redis_connection
    from webhook_app import create_app

    app = create_app(services.settings())
    body = json.loads(PAYLOAD.read_text())
    with app.app_context():
        installation = Installation(github_id=31337, account_login="octo-org", permissions={})
        db.session.add(installation)
        for number in range(repositories):
            repository = Repository(
                github_id=800_000 + number, full_name=f"octo-org/r{number}",
                installation=installation,
            )
            db.session.add_all([repository, Project(repository=repository, branch="main")])
        db.session.commit()
        ids = []
        for number in range(deliveries):
            repository = {
                **body["repository"],
                "id": 800_000 + number % repositories,
                "full_name": f"octo-org/r{number % repositories}",
            }
            delivery_id = str(uuid.uuid4())
            ids.append(delivery_id)
            db.session.add(
                WebhookDelivery(
                    delivery_id=delivery_id, event="push",
                    payload=json.dumps({**body, "repository": repository}),
                    status=DeliveryStatus.QUEUED, installation_github_id=31337,
                    repository_github_id=repository["id"],
                )
            )
        db.session.commit()
        queue = deliveries_queue(redis_connection())
        for delivery_id in ids:
            enqueue_delivery(queue, delivery_id=delivery_id)
        db.engine.dispose()


def _processed(services: Services) -> dict[str, int]:
    import psycopg

    url = services.database_url.replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM webhook_delivery GROUP BY status")
        return {str(status): int(count) for status, count in rows}


def run(kind: str, deliveries: int, repositories: int) -> dict[str, Any]:
    with Services() as services:
        _prepare(services, deliveries, repositories)
        busy = wait_for_quiet_machine()
        env = {**services.environment(), "LOG_LEVEL": "WARNING"}
        out = subprocess.run(
            [sys.executable, "-c", _DRAIN, WORKERS[kind]],
            env=env, cwd=ROOT, capture_output=True, text=True, check=True,
        )
        elapsed = float(next(
            line.split()[1] for line in out.stdout.splitlines() if line.startswith("ELAPSED")
        ))
        statuses = _processed(services)
        if statuses != {"processed": deliveries}:
            raise SystemExit(f"{kind}: not every delivery was processed: {statuses}")
        return {
            "worker": kind,
            "deliveries": deliveries,
            "seconds": round(elapsed, 2),
            "deliveries_per_s": round(deliveries / elapsed, 1),
            "machine_busy_before": round(busy, 2),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", nargs="+", choices=sorted(WORKERS),
                        default=["fork", "simple", "batch"])
    parser.add_argument("--deliveries", type=int, default=2000,
                        help="deliveries per run (the fork worker gets a tenth)")
    parser.add_argument("--repositories", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args(argv)
    results = []
    for kind in options.workers:
        count = max(50, options.deliveries // 10) if kind == "fork" else options.deliveries
        result = run(kind, count, options.repositories)
        results.append(result)
        print(
            f"{kind:>7}: {result['deliveries']:>5} deliveries in {result['seconds']:>6.2f} s"
            f" = {result['deliveries_per_s']:>6.1f}/s"
            f" (machine {result['machine_busy_before']:.0%} busy before)",
            flush=True,
        )
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()

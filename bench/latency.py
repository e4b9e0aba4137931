"""Push → applied: how long a small push takes to reach the database, hop by hop.

    .venv/bin/python -m bench.latency [--pushes 30] [--latencies 0,0.1] [--files 2000]

The stack as deployed, on its own PostgreSQL database and redis-server
(``bench.webhooks.Services``): ``gunicorn -c gunicorn.conf.py wsgi:app`` and one
``python -m worker``, the GitHub emulator in this process sending real signed webhooks
from git's post-receive hook. One generated repository (``--files``, seed 2024) is
installed and synced once; then, at each emulator latency (``knobs.latency``, added to
every REST and git request), ``--pushes`` commits of one to three changed files
(``HistoryGenerator.commit_random_change``) are pushed one at a time, each after the
previous one's sync ended, so none coalesces, and each at the start of a new second
(see ``one_push``).

Every time comes from a record the stack writes anyway, on one machine's clock:

| stamp | where |
| --- | --- |
| sent | the emulator's delivery log (``DeliveryRecord.delivered_at``) |
| received | ``webhook_delivery.received_at`` (the receiver, before its INSERT) |
| delivery taken | the delivery's RQ job ``started_at`` (the worker claimed it) |
| sync queued | ``project_sync.queued_at`` (the push handler created the row) |
| delivery processed | ``webhook_delivery.processed_at`` (the handler returned) |
| sync taken | the sync's RQ job ``started_at`` (the worker dequeued it, before the fork) |
| sync started | ``project_sync.started_at`` (the horse's pipeline began) |
| applied | ``project_sync.finished_at`` + ``phase_seconds["apply"]`` (the commit) |

"push → applied" is received → applied, the target's definition; "sent" is shown for
the webhook hop itself. ``finished_at`` is stamped as the apply transaction begins,
and ``phase_seconds["apply"]`` is that transaction's length, its commit included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import Stack, _ready, _wait  # noqa: E402
from bench.webhooks import (  # noqa: E402
    Services,
    free_port,
    percentile,
    wait_for_quiet_machine,
)

KEY_PREFIX = "project-sync"
"""``REDIS_KEY_PREFIX`` of the stack (its default), which names the delivery jobs."""

TARGET_P50_S = {0.0: 0.5, 0.1: 0.8}
"""The issue's targets for push → applied, by emulator latency (seconds)."""

HOPS = (
    ("webhook", "sent", "received"),
    ("to worker", "received", "delivery_taken"),
    ("handler", "delivery_taken", "sync_queued"),
    ("enqueue", "sync_queued", "delivery_processed"),
    ("queue hop", "delivery_processed", "sync_taken"),
    ("horse start", "sync_taken", "sync_started"),
    ("sync", "sync_started", "applied"),
)
"""(name, from stamp, to stamp): the hops a push goes through, in order."""

STAMPS_SQL = """
SELECT d.received_at, d.processed_at, s.queued_at, s.started_at, s.finished_at,
       s.status, s.mode, s.rq_job_id, s.phase_seconds, s.api_calls
FROM webhook_delivery d JOIN project_sync s ON s.delivery_id = d.delivery_id
WHERE d.delivery_id = %s
"""


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _committed(finished_at: datetime | None, phases: dict[str, float] | None) -> datetime | None:
    """When the apply transaction committed: ``finished_at`` is stamped as it begins, and
    ``phase_seconds["apply"]`` is how long it took, commit included."""
    finished = _utc(finished_at)
    if finished is None:
        return None
    return finished + timedelta(seconds=(phases or {}).get("apply", 0.0))


def _rq_started(redis: Any, job_id: str) -> datetime | None:
    """When the worker took an RQ job (its ``started_at``), from the job's hash."""
    from rq.job import Job

    raw = redis.hget(Job.key_for(job_id), "started_at")
    if not raw:
        return None
    return datetime.fromisoformat(raw.decode().replace("Z", "+00:00"))


class LatencyBench:
    def __init__(self, options: argparse.Namespace, work: Path, services: Services) -> None:
        import psycopg
        from redis import Redis

        from github_emulator.history import generate_repository, push
        from github_emulator.server import EmulatorServer

        self.options, self.work = options, work
        self.github = EmulatorServer(work / "github").start()
        port = free_port()
        self.github.webhook_url = f"http://127.0.0.1:{port}/webhooks/github"
        env = {
            **services.environment(),
            "APP_ID": str(self.github.app_id),
            "PRIVATE_KEY": self.github.private_key_pem,
            "WEBHOOK_SECRET": self.github.webhook_secret,
            "GITHUB_API_URL": self.github.url,
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        self.stack = Stack(env, work)
        self.record = self.github.create_repository("octo", "latency")
        self.history = generate_repository(
            work / "repo", seed=2024, files=options.files, directories=options.files // 25
        )
        self.remote = self.github.clone_url(self.record)
        self.push = lambda: push(self.history.work_dir, self.remote)
        self.push()
        self.sql = psycopg.connect(services.database_url.replace("+psycopg", ""), autocommit=True)
        self.redis = Redis.from_url(services.redis_url)
        self.stack.start("web", "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app")
        self.stack.start("worker", "-m", "worker")
        _wait(lambda: _ready(port), "gunicorn", 60)

    def first_sync(self) -> float:
        self.github.install("octo", [self.record])
        done = "SELECT count(*) FROM project_sync WHERE status = 'succeeded'"

        def synced() -> bool:
            row = self.sql.execute(done).fetchone()
            return row is not None and row[0] >= 1

        return _wait(synced, "the first sync", 300)

    def one_push(self) -> dict[str, Any]:
        before = len(self.github.deliveries)
        self.history.commit_random_change()
        # In a second of its own: GitHub's push times have a second's resolution, and a
        # sync may fetch the push's ``after`` directly only for a push later than every
        # one before it (a branch is seldom pushed twice a second).
        time.sleep(1 - time.time() % 1 + 0.01)
        self.push()  # returns once the push's webhook was answered
        pushes = [d for d in self.github.deliveries[before:] if d.event == "push"]
        assert pushes and pushes[-1].status_code == 202, pushes
        delivery = pushes[-1]
        row = self._wait_for_sync(delivery.guid)
        received, processed, queued, started, finished, status, mode, job_id, phases, calls = row
        stamps = {
            "sent": _utc(delivery.delivered_at),
            "received": _utc(received),
            "delivery_taken": _rq_started(self.redis, f"{KEY_PREFIX}-delivery-{delivery.guid}"),
            "sync_queued": _utc(queued),
            "delivery_processed": _utc(processed),
            "sync_taken": _rq_started(self.redis, job_id),
            "sync_started": _utc(started),
            "applied": _committed(finished, phases),
        }
        hops = {
            name: (stamps[end] - stamps[start]).total_seconds()  # type: ignore[operator]
            for name, start, end in HOPS
            if stamps[start] is not None and stamps[end] is not None
        }
        total = (stamps["applied"] - stamps["received"]).total_seconds()  # type: ignore[operator]
        return {"guid": delivery.guid, "status": status, "mode": mode, "api_calls": calls,
                "push_to_applied_s": total, "hops_s": hops, "phase_seconds": phases}

    def _wait_for_sync(self, guid: str) -> tuple[Any, ...]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = self.sql.execute(STAMPS_SQL, (guid,)).fetchone()
            if row is not None and row[5] in ("succeeded", "failed", "superseded"):
                assert row[5] == "succeeded", row
                return tuple(row)
            time.sleep(0.01)
        raise SystemExit(f"the sync of delivery {guid} did not finish within 60 s")

    def run(self) -> dict[str, Any]:
        results: dict[str, Any] = {"first_sync_wait_s": round(self.first_sync(), 2)}
        for latency in self.options.latencies:
            self.github.knobs.latency = latency
            self.one_push()  # not counted: the first push after a change of latency
            busy = wait_for_quiet_machine()
            samples = [self.one_push() for _ in range(self.options.pushes)]
            results[f"{int(latency * 1000)}ms"] = {
                "latency_s": latency,
                "machine_busy_before": round(busy, 2),
                "samples": samples,
            }
        self.github.knobs.latency = 0.0
        return results

    def stop(self) -> None:
        self.stack.stop()
        self.sql.close()
        self.github.stop()


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    table = []
    for key, run in results.items():
        if not isinstance(run, dict):
            continue
        samples = run["samples"]
        totals = [s["push_to_applied_s"] for s in samples]
        row: dict[str, Any] = {
            "latency": key,
            "pushes": len(samples),
            "p50_s": percentile(totals, 0.5),
            "p90_s": percentile(totals, 0.9),
            "max_s": max(totals),
            "target_p50_s": TARGET_P50_S.get(run["latency_s"]),
            "api_calls_p50": percentile([s["api_calls"] or 0 for s in samples], 0.5),
            "modes": sorted({str(s["mode"]) for s in samples}),
            "machine_busy_before": run["machine_busy_before"],
            "hops_p50_s": {},
            "phases_p50_s": {
                phase: percentile([(s["phase_seconds"] or {}).get(phase, 0.0) for s in samples],
                                  0.5)
                for phase in ("resolve", "diff", "fetch", "apply")
            },
        }
        for name, _start, _end in HOPS:
            values = [s["hops_s"][name] for s in samples if name in s["hops_s"]]
            if values:
                row["hops_p50_s"][name] = percentile(values, 0.5)
        table.append(row)
    return table


def print_table(table: list[dict[str, Any]]) -> None:
    print(f"\n{'latency':>7} {'pushes':>6} {'p50 s':>7} {'p90 s':>7} {'max s':>7} "
          f"{'target p50':>10} {'calls':>5}  modes")
    for row in table:
        target = row["target_p50_s"]
        verdict = "" if target is None else ("met" if row["p50_s"] <= target else "MISSED")
        print(f"{row['latency']:>7} {row['pushes']:>6} {row['p50_s']:>7.3f} {row['p90_s']:>7.3f} "
              f"{row['max_s']:>7.3f} {'' if target is None else f'<= {target}':>7} {verdict:<6}"
              f"{row['api_calls_p50']:>3}  {', '.join(row['modes'])}")
    print("\nhops, p50 in ms (received → applied is their sum from 'to worker' on):")
    print(f"{'latency':>7} " + " ".join(f"{name:>11}" for name, _s, _e in HOPS))
    for row in table:
        cells = (row["hops_p50_s"].get(name) for name, _s, _e in HOPS)
        print(f"{row['latency']:>7} " + " ".join(
            f"{'' if v is None else f'{v * 1000:.1f}':>11}" for v in cells))
    print("\nthe sync hop's phases (ProjectSync.phase_seconds), p50 in ms; machine busy before:")
    for row in table:
        phases = ", ".join(f"{k} {v * 1000:.1f}" for k, v in row["phases_p50_s"].items())
        print(f"{row['latency']:>7} {phases}; busy {row['machine_busy_before']:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=30)
    parser.add_argument("--latencies", default="0,0.1",
                        help="emulator latencies in seconds, comma-separated (default 0,0.1)")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--json", help="write the results here (default bench/results/)")
    options = parser.parse_args()
    options.latencies = [float(v) for v in options.latencies.split(",")]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp, Services() as services:
        bench = LatencyBench(options, Path(tmp), services)
        try:
            results = bench.run()
        finally:
            bench.stop()
    table = summarise(results)
    print_table(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(options.json) if options.json else out / f"latency-{stamp}.json"
    document = {"args": vars(options), "load_average": os.getloadavg(), "table": table,
                "results": results}
    path.write_text(json.dumps(document, indent=2, default=str))
    print(f"written to {path}")


if __name__ == "__main__":
    main()

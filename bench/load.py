"""Sustained load: the stack as deployed, 60 s of pushes at 500/s, then an audit.

``python -m bench.load`` (``--help`` for knobs). On this machine, nothing shared touched:

- a PostgreSQL database of its own (the models' schema, which the migrations equal)
  and a redis-server of its own;
- the GitHub emulator in this process with ``--repositories`` repositories (a small
  generated history each) and the App installed on all of them;
- ``gunicorn -c gunicorn.conf.py wsgi:app`` (as the Procfile's ``web``), ``--workers``
  ``python -m worker`` processes and the maintenance process.

After the installation's first syncs, a load generator in its own process sends push
deliveries at ``--rate`` per second for ``--seconds`` (an open loop: latency counts from
each request's scheduled time), one new connection each as GitHub sends them, spread
over the repositories, ``--forged`` of them with a wrong signature and ``--duplicates``
of them a resend of an earlier delivery. Meanwhile real commits are pushed to random
repositories (``--commits-per-second``), whose webhooks the emulator sends itself. Then
it waits for the backlog to drain and audits: every genuine delivery stored once and
processed once, every forgery refused and nothing of it stored, every duplicate
recognised, every project at its branch's head. RSS of every process is taken before
the load and after the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from githubkit.webhooks import sign

from bench.webhooks import (
    ROOT,
    Services,
    _exchange,
    free_port,
    percentile,
    wait_for_quiet_machine,
)

FORGED_SECRET = "not-the-webhook-secret"


# --- load generator (its own process) ------------------------------------------------------


def _plan(bodies: list[bytes], secret: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Every request of the run, decided up front: genuine, forged or a duplicate."""
    rng = random.Random(2024)
    total = int(options["rate"] * options["seconds"])
    signatures = [sign(secret, body, "sha256") for body in bodies]
    forged = [sign(FORGED_SECRET, body, "sha256") for body in bodies]
    plan: list[dict[str, Any]] = []
    genuine: list[int] = []
    for number in range(total):
        roll = rng.random()
        repo = number % len(bodies)
        if roll < options["forged"]:
            plan.append({"kind": "forged", "id": str(uuid.uuid4()), "repo": repo,
                         "signature": forged[repo]})
        elif roll < options["forged"] + options["duplicates"] and len(genuine) > options["rate"]:
            # an earlier delivery, sent at least a second before, sent again
            original = plan[genuine[rng.randrange(len(genuine) - int(options["rate"]))]]
            plan.append({**original, "kind": "duplicate"})
        else:
            genuine.append(len(plan))
            plan.append({"kind": "genuine", "id": str(uuid.uuid4()), "repo": repo,
                         "signature": signatures[repo]})
    return plan


def _request(port: int, body: bytes, item: dict[str, Any]) -> bytes:
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "User-Agent: GitHub-Hookshot/load\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: push\r\nX-GitHub-Delivery: {item['id']}\r\n"
        f"X-GitHub-Hook-ID: 1\r\nX-Hub-Signature-256: {item['signature']}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def _send_all(port: int, bodies: list[bytes], plan: list[dict[str, Any]],
                    rate: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    async def fire(item: dict[str, Any], scheduled: float) -> None:
        status, error = 0, None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            status, _ = await _exchange(reader, writer, _request(port, bodies[item["repo"]], item))
            await reader.read()
            writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            error = type(exc).__name__  # not resent: GitHub would log it failed
        results.append({**item, "status": status, "error": error,
                        "latency": time.perf_counter() - scheduled})

    tasks = []
    start = time.perf_counter()
    for number, item in enumerate(plan):
        scheduled = start + number / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(item, scheduled)))
    await asyncio.gather(*tasks)
    return results


def load_process(port: int, bodies: list[bytes], secret: str, options: dict[str, Any],
                 out: Any) -> None:
    plan = _plan(bodies, secret, options)
    started = time.perf_counter()
    results = asyncio.run(_send_all(port, bodies, plan, options["rate"]))
    out.send({"results": results, "elapsed": time.perf_counter() - started})


# --- the stack -----------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


class Stack:
    """The processes of the Procfile, started with the environment the bench made."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *argv: str, nice: int = 0) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )

    def rss(self) -> dict[str, int]:
        """RSS in MB of every process, gunicorn's workers and work horses included."""
        sizes: dict[str, int] = {}
        for name, process in self.processes.items():
            sizes[name] = rss_kb(process.pid) // 1024
            for number, child in enumerate(children(process.pid)):
                sizes[f"{name}/child-{number}"] = rss_kb(child) // 1024
        return sizes

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait(check: Any, what: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def _query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, params))


def run(options: argparse.Namespace) -> dict[str, Any]:
    from github_emulator.events import push as push_payload
    from github_emulator.history import generate_repository, push
    from github_emulator.server import EmulatorServer

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    with Services() as services:
        github = EmulatorServer(work / "github").start()
        port = free_port()
        github.webhook_url = f"http://127.0.0.1:{port}/webhooks/github"
        env = {
            **services.environment(),
            "APP_ID": str(github.app_id),
            "PRIVATE_KEY": github.private_key_pem,
            "WEBHOOK_SECRET": github.webhook_secret,
            "GITHUB_API_URL": github.url,
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        url = services.database_url.replace("+psycopg", "")
        stack = Stack(env, work)
        try:
            repos = []
            for number in range(options.repositories):
                record = github.create_repository("load", f"r{number:02d}")
                history = generate_repository(work / f"r{number}", seed=number, files=8,
                                              directories=2)
                push(history.work_dir, github.clone_url(record))
                repos.append((record, history))
            stack.start("web", "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app")
            for number in range(options.workers):
                stack.start(f"worker-{number + 1}", "-m", "worker",
                            nice=options.worker_nice)
            stack.start("maintenance", "-m", "flask", "--app", "wsgi:app", "maintenance", "run")
            _wait(lambda: _ready(port), "gunicorn", 60)
            installation_id = github.install("load", [record for record, _ in repos])
            synced = ("SELECT count(DISTINCT project_id) FROM project_sync "
                      "WHERE status = 'succeeded'")
            _wait(lambda: _query(url, synced)[0][0] == options.repositories,
                  "the first syncs", 300)
            installation = github.installation(installation_id)
            bodies = []
            for record, _history in repos:
                git = github.git(record)
                head = git.git("rev-parse", "refs/heads/main").decode().strip()
                document = push_payload(github.url, repo=record, git=git, ref="refs/heads/main",
                                        before=head, after=head, pusher=record.owner,
                                        installation=installation)
                bodies.append(json.dumps(document, separators=(",", ":")).encode())
            before_load = len(github.deliveries)
            time.sleep(2)
            rss_before = stack.rss()
            rss_before["redis-server"] = rss_kb(services.redis.pid) // 1024  # type: ignore[union-attr]

            pushing = threading.Event()
            real_pushes: list[str] = []

            def commit_and_push() -> None:
                rng = random.Random(7)
                while not pushing.is_set():
                    record, history = repos[rng.randrange(len(repos))]
                    history.commit_random_change()
                    push(history.work_dir, github.clone_url(record))
                    real_pushes.append(record.full_name)
                    pushing.wait(1 / options.commits_per_second)

            pusher = threading.Thread(target=commit_and_push, daemon=True)
            receiver, sender = multiprocessing.Pipe(duplex=False)
            load = multiprocessing.Process(
                target=load_process,
                args=(port, bodies, github.webhook_secret,
                      {"rate": options.rate, "seconds": options.seconds,
                       "forged": options.forged, "duplicates": options.duplicates},
                      sender),
            )
            busy_before = wait_for_quiet_machine()
            load_started = time.time()
            pusher.start()
            load.start()
            sent = receiver.recv()
            load.join()
            pushing.set()
            pusher.join()
            load_ended = time.time()

            waiting = "SELECT count(*) FROM webhook_delivery WHERE status IN ('queued', 'pending')"
            busy = "SELECT count(*) FROM project_sync WHERE status IN ('queued', 'running')"
            drain = _wait(lambda: _query(url, waiting)[0][0] == 0, "the delivery backlog", 900)
            drain_syncs = _wait(lambda: _query(url, busy)[0][0] == 0, "the syncs", 900)
            rss_after = stack.rss()
            rss_after["redis-server"] = rss_kb(services.redis.pid) // 1024  # type: ignore[union-attr]
            report = _audit(url, github, repos, sent, before_load, real_pushes,
                            load_started, load_ended)
            report.update(
                machine_busy_before_load=round(busy_before, 2),
                worker_nice=options.worker_nice,
                backlog_empty_after_s=round(drain, 1),
                syncs_idle_after_s=round(drain + drain_syncs, 1),
                rss_mb_before=rss_before,
                rss_mb_after=rss_after,
            )
            return report
        finally:
            stack.stop()
            github.stop()


def _ready(port: int) -> bool:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
    except OSError:
        return False


def _audit(url: str, github: Any, repos: list[Any], sent: dict[str, Any], before_load: int,
           real_pushes: list[str], load_started: float, load_ended: float) -> dict[str, Any]:
    results = sent["results"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in results:
        by_kind.setdefault(item["kind"], []).append(item)
    genuine = {r["id"] for r in by_kind.get("genuine", []) if r["status"] == 202}
    from_github = {
        d.guid for d in github.deliveries[before_load:]
        if d.event == "push" and d.status_code and 200 <= d.status_code < 300
    }
    stored = dict(_query(url, "SELECT delivery_id, count(*) FROM webhook_delivery "
                              "GROUP BY delivery_id"))
    rows = _query(url, "SELECT delivery_id, status, attempts FROM webhook_delivery "
                       "WHERE event = 'push' AND received_at >= to_timestamp(%s)", load_started)
    statuses: dict[str, int] = {}
    for _, status, _attempts in rows:
        statuses[status] = statuses.get(status, 0) + 1
    processed_once = sum(1 for d, s, a in rows if s in ("processed", "ignored") and a == 1)
    forged_ids = {r["id"] for r in by_kind.get("forged", [])}
    span = _query(url, "SELECT extract(epoch FROM min(received_at)), "
                       "extract(epoch FROM max(processed_at)) FROM webhook_delivery "
                       "WHERE event = 'push' AND received_at >= to_timestamp(%s)", load_started)[0]
    heads_ok = 0
    for record, _history in repos:
        head = github.git(record).git("rev-parse", "refs/heads/main").decode().strip()
        synced = _query(
            url,
            "SELECT s.head_commit_sha FROM project p JOIN repository r ON r.id = p.repository_id "
            "JOIN project_sync s ON s.id = p.current_sync_id WHERE r.full_name = %s",
            record.full_name,
        )
        heads_ok += bool(synced and synced[0][0] == head)
    syncs = {
        f"{trigger} {status}": count
        for trigger, status, count in _query(
            url, "SELECT trigger, status, count(*) FROM project_sync "
                 "WHERE queued_at >= to_timestamp(%s) GROUP BY trigger, status", load_started)
    }
    latencies = [r["latency"] * 1000 for r in results if r["status"]]
    elapsed = sent["elapsed"]
    every_genuine = genuine | from_github
    return {
        "requests": len(results),
        "answers": _count(r["status"] for r in results),
        "accepted_per_s": round(len(genuine) / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1),
        },
        "forged": {"sent": len(forged_ids),
                   "refused_401": sum(r["status"] == 401 for r in by_kind.get("forged", [])),
                   "stored": len(forged_ids & set(stored))},
        "duplicates": {"sent": len(by_kind.get("duplicate", [])),
                       "recognised_200": sum(r["status"] == 200
                                             for r in by_kind.get("duplicate", []))},
        "genuine": {"accepted_by_receiver": len(genuine), "sent_by_emulator": len(from_github),
                    "stored": len(every_genuine & set(stored)),
                    "stored_more_than_once": sum(1 for d in every_genuine if stored.get(d, 0) > 1),
                    "processed_exactly_once": processed_once,
                    "final_statuses": statuses},
        "deliveries_processed_per_s": round(
            len(rows) / max(1e-9, float(span[1]) - float(span[0])), 1) if span[0] else 0,
        "load_seconds": round(load_ended - load_started, 1),
        "real_pushes": len(real_pushes),
        "syncs_by_trigger_since_load": syncs,
        "projects_at_head": f"{heads_ok}/{len(repos)}",
        "errors_no_answer": _count(r["error"] for r in results if not r["status"]),
    }


def _count(values: Any) -> dict[str, int]:
    counted: dict[str, int] = {}
    for value in values:
        counted[str(value)] = counted.get(str(value), 0) + 1
    return counted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repositories", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--forged", type=float, default=0.01)
    parser.add_argument("--duplicates", type=float, default=0.01)
    parser.add_argument("--commits-per-second", type=float, default=2.0)
    parser.add_argument(
        "--worker-nice", type=int, default=0,
        help="run the workers at this nice level, so that on a machine whose cores the "
             "receiver and workers share, answering GitHub comes before draining the queue",
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    options = parser.parse_args(argv)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    report = run(options)
    print(json.dumps(report, indent=2))
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

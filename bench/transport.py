"""Transports compared on ordinary pushes: REST, git's smart HTTP, a naive sync, and a
plain ``git fetch`` into a local mirror as the floor.

    .venv/bin/python -m bench.transport [--files 5000] [--directories 200] [--pushes 15]

One generated repository (github_emulator/history.py, seed 2024) in the in-process
emulator; three projects track it, each from its own first sync: one synced with
``SYNC_TRANSPORT=rest``, one with ``git`` (the head read with ``ls-refs``, as for a
manual or reconcile sync), and one with ``git`` whose syncs the push handler requests
from the emulator's own push payload ("git push": the sync fetches the push's
``after``, when the handler trusts it). Then, at each latency (0 and 100 ms added to
every request, REST and git alike), ``--pushes`` commits of one to three changed files
are pushed one at a time, at most one a second (``--push-interval``: GitHub's push
times have a second's resolution, and a push in the same second as the one before is
not trusted with its ``after``), and, after each push, in this order: the REST sync,
the git sync, the push-requested git sync, the naive sync (branch, one recursive tree,
one blob call per changed path) and ``git fetch`` of the branch into a bare mirror.
Requests are what the emulator served (REST calls, git requests, archive downloads);
seconds are wall time of the sync itself (its row is queued before the clock starts).
PostgreSQL and Redis as in bench/sync.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync import claim_redis, create_database, drop_database  # noqa: E402

KINDS = ("rest", "git", "git push", "naive", "git fetch")
PROJECTS = ("git push", "rest", "git")
"""The first one has the emulator's repository id, so the push handler finds it."""


class TransportBench:
    def __init__(self, args: argparse.Namespace, tmp: Path, database_url: str, redis_url: str):
        from github_emulator.history import HistoryGenerator, push
        from github_emulator.server import EmulatorServer
        from models import Installation, Project, Repository, db
        from webhook_app import create_app

        self.args, self.tmp = args, tmp
        self.server = EmulatorServer(tmp / "github").start()
        self.app = create_app(
            {
                "TESTING": True,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "SECRET_KEY": "bench",
                "WEBHOOK_SECRETS": ("bench",),
                "GITHUB_API_URL": self.server.url,
                "APP_ID": self.server.app_id,
                "PRIVATE_KEY": self.server.private_key_pem,
            }
        )
        self.ctx = self.app.app_context()
        self.ctx.push()
        db.create_all()
        record = self.server.create_repository("octo", "big")
        installation_id = self.server.install("octo", [record])
        self.history = HistoryGenerator(tmp / "work", seed=2024, sync_worktree=False)
        self.history.initial_commit(files=args.files, directories=args.directories)
        self.remote = self.server.clone_url(record)
        self.push = lambda: push(self.history.work_dir, self.remote)
        self.push()
        self.installation_id = installation_id
        installation = Installation(github_id=installation_id, account_login="octo")
        self.projects = {}
        for number, transport in enumerate(PROJECTS):
            repository = Repository(
                github_id=record.id + number * 100_000,
                installation=installation,
                full_name="octo/big",
            )
            project = Project(repository=repository, branch="main")
            db.session.add_all([installation, repository, project])
            self.projects[transport] = project
        db.session.commit()
        self.git_url = f"{self.server.url}/octo/big.git"
        self.naive_state: dict[str, str] = {}
        self.mirror = tmp / "mirror.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(self.mirror)], check=True)

    def counts(self) -> tuple[int, int, int]:
        """(REST calls, git requests, archive downloads) served so far."""
        counts = self.server.request_counts()
        archive = sum(n for k, n in counts.by_endpoint.items() if "_codeload" in k)
        return counts.total - archive, counts.git_requests, archive

    def measured(self, run: Any) -> dict[str, Any]:
        before, started = self.counts(), time.monotonic()
        mode = run()
        seconds = time.monotonic() - started
        after = self.counts()
        rest, git, archive = (a - b for a, b in zip(after, before, strict=True))
        return {"rest": rest, "git": git, "archive": archive, "s": seconds, "mode": mode}

    def queue(self, transport: str) -> int:
        """The sync's row: made here, or, for "git push", by the push handler from the
        emulator's last push delivery (as the delivery job would)."""
        from models import ProjectSync, SyncTrigger, db
        from sync_jobs.installations import push as handle_push

        if transport != "git push":
            sync = ProjectSync(project_id=self.projects[transport].id, trigger=SyncTrigger.PUSH)
            db.session.add(sync)
            db.session.commit()
            return sync.id
        delivery = self.server.deliveries[-1]
        handle_push(delivery.payload, delivery_id=f"{delivery.guid}-{delivery.id}")
        queued = db.session.scalars(
            db.select(ProjectSync)
            .filter_by(project_id=self.projects[transport].id)
            .order_by(ProjectSync.id.desc())
        ).first()
        assert queued is not None
        self.trusted += queued.pushed_after is not None
        return queued.id

    def sync(self, transport: str, sync_id: int | None = None) -> str:
        """Run a queued sync (``sync_id``, else one queued now) to its end."""
        from models import ProjectSync, SyncStatus, db
        from sync_jobs.pipeline import execute_sync

        self.app.config["SYNC_TRANSPORT"] = "git" if transport == "git push" else transport
        sync = db.session.get_one(ProjectSync, sync_id or self.queue(transport))
        execute_sync(sync.id)
        db.session.expire_all()
        row = db.session.get_one(ProjectSync, sync.id)
        assert row.status is SyncStatus.SUCCEEDED, row.error
        self.phases.setdefault(transport, []).append(row.phase_seconds)
        return str(row.mode)

    def connector(self) -> Any:
        from sync_jobs.connector import GitHubConnector
        from sync_jobs.redis_client import redis_connection

        return GitHubConnector(
            base_url=self.server.url,
            app_id=self.server.app_id,
            private_key=self.server.private_key_pem,
            redis=redis_connection(),
            installation_id=self.installation_id,
            full_name="octo/big",
        )

    def naive(self, *, first: bool = False) -> str:
        """Branch, recursive tree, one blob call per path whose SHA changed (the first
        listing only records the state: the comparison is of pushes, not first syncs)."""
        with self.connector() as gh:
            head = gh.branch_head("main")
            body, _truncated = gh.tree(head.tree_sha, recursive=True)
            listing = {i["path"]: i["sha"] for i in body["tree"] if i["type"] == "blob"}
            changed = {s for p, s in listing.items() if self.naive_state.get(p) != s}
            for sha in () if first else changed:
                gh.blob(sha)
        self.naive_state = listing
        return "naive"

    def git_fetch(self) -> str:
        with self.connector() as gh:
            token = gh.installation_token
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.mirror),
                "-c",
                f"http.extraHeader=Authorization: Basic {basic}",
                "fetch",
                "--quiet",
                self.git_url,
                "+refs/heads/main:refs/heads/main",
            ],
            check=True,
        )
        return "git fetch"

    def paced_push(self) -> None:
        """Push once the clock is ``--push-interval`` past the last push (and in a new
        second, the resolution of GitHub's push times)."""
        due = max(self.pushed_at + self.args.push_interval, float(int(self.pushed_at) + 1))
        time.sleep(max(0.0, due - time.time()))
        self.pushed_at = time.time()
        self.push()

    def run(self) -> dict[str, Any]:
        self.phases: dict[str, list[Any]] = {}
        self.trusted = 0
        self.pushed_at = time.time()
        for transport in PROJECTS:
            self.sync(transport)
        self.git_fetch()
        self.naive(first=True)
        self.trusted = 0
        results: dict[str, Any] = {}
        for latency in (0.0, 0.1):
            self.server.knobs.latency = latency
            rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
            for _ in range(self.args.pushes):
                self.history.commit_random_change()
                self.paced_push()
                for transport in ("rest", "git", "git push"):
                    # The row is queued before the clock starts: for "git push" that is
                    # the push handler's work, the delivery job's (bench.latency).
                    queued = self.queue(transport)
                    rows[transport].append(
                        self.measured(lambda t=transport, q=queued: self.sync(t, q))
                    )
                rows["naive"].append(self.measured(self.naive))
                rows["git fetch"].append(self.measured(self.git_fetch))
            results[f"{int(latency * 1000)}ms"] = rows
        results["pushes trusted with their after"] = self.trusted
        self.server.knobs.latency = 0.0
        return results

    def stop(self) -> None:
        self.ctx.pop()
        self.server.stop()


def summarise(results: dict[str, Any]) -> list[dict[str, Any]]:
    table = []
    for latency, rows in results.items():
        if not isinstance(rows, dict):
            continue
        for kind in KINDS:
            samples = rows[kind]
            n = len(samples)
            table.append(
                {
                    "latency": latency,
                    "transport": kind,
                    "rest": sum(s["rest"] for s in samples) / n,
                    "git": sum(s["git"] for s in samples) / n,
                    "archive": sum(s["archive"] for s in samples) / n,
                    "s": sum(s["s"] for s in samples) / n,
                    "modes": sorted({s["mode"] for s in samples}),
                }
            )
    return table


def print_table(table: list[dict[str, Any]]) -> None:
    print(
        f"{'latency':>7} {'transport':<10} {'REST':>6} {'git':>5} {'archive':>7} "
        f"{'requests':>8} {'s/sync':>7}  modes"
    )
    for row in table:
        requests = row["rest"] + row["git"] + row["archive"]
        print(
            f"{row['latency']:>7} {row['transport']:<10} {row['rest']:>6.2f} {row['git']:>5.2f} "
            f"{row['archive']:>7.2f} {requests:>8.2f} {row['s']:>7.3f}  {', '.join(row['modes'])}"
        )
    at = {r["transport"]: r for r in table if r["latency"] == "100ms"}
    git, naive, floor = at["git push"], at["naive"], at["git fetch"]

    def total(row: dict[str, Any]) -> float:
        return float(row["rest"] + row["git"] + row["archive"])

    print(
        f"\nat 100 ms: git push/naive requests {total(git) / total(naive):.2f} (target <= 0.33), "
        f"seconds {git['s'] / naive['s']:.2f} (target <= 0.5); "
        f"git push/plain git fetch seconds {git['s'] / floor['s']:.2f} (target <= 1.5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--directories", type=int, default=200)
    parser.add_argument("--pushes", type=int, default=15)
    parser.add_argument("--push-interval", type=float, default=1.0)
    args = parser.parse_args()
    import redis

    redis_url = claim_redis()
    db_name, database_url = create_database()
    table: list[dict[str, Any]] = []
    phases: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="transport-bench-") as tmp:
            bench = TransportBench(args, Path(tmp), database_url, redis_url)
            try:
                results = bench.run()
                table = summarise(results)
                trusted = results["pushes trusted with their after"]
                print(f"push syncs that fetched the push's after: {trusted} of {2 * args.pushes}")
                phases = bench.phases
            finally:
                bench.stop()
    finally:
        from models import db

        try:
            db.session.remove()
            db.engine.dispose()
        except Exception:
            pass
        drop_database(db_name)
        redis.Redis.from_url(redis_url).flushdb()
    print_table(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"transport-{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {"args": vars(args), "table": table, "phase_seconds": phases}
    path.write_text(json.dumps(document, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()

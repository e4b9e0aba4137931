"""Sync engine benchmark against the emulator with GitHub-like latency.

    .venv/bin/python bench/sync.py [--files 50000] [--directories 2000] [--commits 100]

Everything runs on 127.0.0.1: an in-process emulator (100 ms added to every request), a
PostgreSQL database created for the run and dropped after it, an empty Redis database
number claimed for the run. Prints the numbers and writes them to bench/results/.
The first sync runs in a child process so its peak memory is measured alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
CLAIM_KEY = "project-sync:bench-claim"
DEEP = 4
"""Directories above the file the one-deep-change case edits (the issue's "4 deep")."""


def claim_redis() -> str:
    import redis

    script = (
        "if redis.call('DBSIZE') == 0 then redis.call('SET', KEYS[1], ARGV[1], 'EX', 3600)"
        " return 1 end return 0"
    )
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS_BASE}/{number}")
        if client.eval(script, 1, CLAIM_KEY, "bench"):
            return f"{REDIS_BASE}/{number}"
    raise SystemExit("no empty Redis database to claim")


def create_database() -> tuple[str, str]:
    import psycopg

    name = f"project_sync_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0].replace(
        "postgresql://", "postgresql+psycopg://"
    ) + "/" + name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def worker_main(settings_path: str, sync_id: str) -> None:
    """Child-process mode: run one sync, as a worker would."""
    from sync_jobs.pipeline import execute_sync
    from webhook_app import create_app

    settings = json.loads(Path(settings_path).read_text())
    settings["WEBHOOK_SECRETS"] = tuple(settings["WEBHOOK_SECRETS"])
    with create_app(settings).app_context():
        execute_sync(int(sync_id))


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        from github_emulator.server import EmulatorServer

        self.args = args
        self.tmp = tmp
        self.server = EmulatorServer(tmp / "github").start()
        self.results: dict[str, Any] = {
            "files": args.files,
            "directories": args.directories,
            "latency_s": args.latency,
        }

    def calls(self) -> int:
        """API calls: every counted request except the archive download itself, which on
        GitHub is served by codeload after the API's redirect and is not an API call."""
        counts = self.server.request_counts()
        codeload = sum(n for k, n in counts.by_endpoint.items() if "_codeload" in k)
        return counts.total - codeload

    def endpoints(self) -> Counter[str]:
        """Requests so far, by endpoint (``git/trees`` counts levels and recursive ones)."""
        return Counter(self.server.request_counts().by_endpoint)

    def requests(self) -> int:
        return self.server.request_counts().total

    def setup(self, database_url: str, redis_url: str) -> None:
        from github_emulator.history import HistoryGenerator, push
        from models import Installation, Project, Repository, db
        from webhook_app import create_app

        self.settings = {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench",
            "WEBHOOK_SECRETS": ["bench"],
            "GITHUB_API_URL": self.server.url,
            "APP_ID": self.server.app_id,
            "PRIVATE_KEY": self.server.private_key_pem,
        }
        (self.tmp / "settings.json").write_text(json.dumps(self.settings))
        self.app = create_app({**self.settings, "WEBHOOK_SECRETS": ("bench",)})
        self.ctx = self.app.app_context()
        self.ctx.push()
        db.create_all()
        record = self.server.create_repository("octo", "big")
        installation_id = self.server.install("octo", [record])
        started = time.monotonic()
        self.history = HistoryGenerator(self.tmp / "work", seed=2024, sync_worktree=False)
        self.history.initial_commit(files=self.args.files, directories=self.args.directories)
        self.deep_path = self.ensure_deep_file()
        self.clone_url = self.server.clone_url(record)
        push(self.history.work_dir, self.clone_url)
        self.results["generate_s"] = round(time.monotonic() - started, 2)
        installation = Installation(github_id=installation_id, account_login="octo")
        repository = Repository(
            github_id=record.id, installation=installation, full_name="octo/big"
        )
        self.project = Project(repository=repository, branch="main")
        db.session.add_all([installation, repository, self.project])
        db.session.commit()
        self.server.knobs.latency = self.args.latency

    def new_sync(self) -> int:
        from models import ProjectSync, SyncTrigger, db

        sync = ProjectSync(project_id=self.project.id, trigger=SyncTrigger.PUSH)
        db.session.add(sync)
        db.session.commit()
        return sync.id

    def sync(self) -> dict[str, Any]:
        from models import ProjectSync, SyncStatus, db
        from sync_jobs.pipeline import execute_sync

        sync_id = self.new_sync()
        before, started = self.calls(), time.monotonic()
        execute_sync(sync_id)
        wall = time.monotonic() - started
        row = db.session.get_one(ProjectSync, sync_id)
        assert row.status is SyncStatus.SUCCEEDED, row.error
        return {
            "api_calls": self.calls() - before,
            "wall_s": round(wall, 3),
            "mode": row.mode,
            "changes": row.files_added + row.files_modified + row.files_removed,
        }

    def first_sync(self) -> None:
        from sqlalchemy import func, select

        from models import ProjectSync, RepositoryFile, db

        sync_id = self.new_sync()
        before, started = self.calls(), time.monotonic()
        requests_before = self.requests()
        subprocess.run(
            [sys.executable, __file__, "--worker", str(self.tmp / "settings.json"), str(sync_id)],
            check=True,
            cwd=ROOT,
        )
        wall = time.monotonic() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        db.session.expire_all()
        row = db.session.get_one(ProjectSync, sync_id)
        files = db.session.scalar(select(func.count()).select_from(RepositoryFile))
        self.results["first_sync"] = {
            "api_calls": self.calls() - before,
            "http_requests": self.requests() - requests_before,
            "by_endpoint": self.server.request_counts().by_endpoint,
            "wall_s": round(wall, 2),
            "files": files,
            "files_per_s": round(files / wall),
            "peak_worker_mb": round(peak_kb / 1024, 1),
            "mode": row.mode,
            "phase_seconds": row.phase_seconds,
            "status": row.status.value,
        }

    def ensure_deep_file(self) -> str:
        """A regular file exactly 4 directories deep, for the one-deep-change case.

        The generator puts files 0-3 or 8 directories deep, so when it made none at
        depth 4 one is added, before the first sync, in a directory that already exists
        (one with deeper content below it, like most real depth-4 directories).
        """
        files = self.history.files
        at_depth = sorted(
            p for p, (mode, _c) in files.items() if mode == "100644" and p.count("/") == DEEP
        )
        if at_depth:
            return at_depth[0]
        directory = min("/".join(p.split("/")[:DEEP]) for p in files if p.count("/") > DEEP)
        path = f"{directory}/deep-change-target.txt"
        self.history._commit(
            "a file 4 directories deep",
            {path: ("100644", b"edited by the benchmark\n")},
            parent=self.history.head,
        )
        return path

    def one_deep_change(self) -> None:
        path = self.deep_path
        assert path.count("/") == DEEP, path
        mode, content = self.history.files[path]
        self.history._commit(
            "one deep edit", {path: (mode, content + b"edit\n")}, parent=self.history.head
        )
        self.push()
        self.results["one_deep_change"] = {"path_depth": path.count("/"), **self.sync()}

    def push(self, *, force: bool = False) -> None:
        from github_emulator.history import push

        push(self.history.work_dir, self.clone_url, force=force)

    def replay(self) -> None:
        """Our sync and a naive one, push by push, in the same run with the same latency."""
        ours: dict[str, Any] = {"api_calls": 0, "wall_s": 0.0, "by_endpoint": Counter()}
        naive: dict[str, Any] = {
            "api_calls": 0,
            "wall_s": 0.0,
            "truncated_listings": 0,
            "by_endpoint": Counter(),
        }
        previous = self.naive_listing()[0]
        for number in range(self.args.commits):
            if number % 20 == 19:
                self.history.force_push_rewrite(drop=1)
                self.push(force=True)
            else:
                self.history.commit_random_change()
                self.push()
            endpoints = self.endpoints()
            result = self.sync()
            ours["api_calls"] += result["api_calls"]
            ours["wall_s"] += result["wall_s"]
            ours["by_endpoint"] += self.endpoints() - endpoints
            before, started, endpoints = self.calls(), time.monotonic(), self.endpoints()
            listing, truncated = self.naive_listing()
            changed = {sha for path, sha in listing.items() if previous.get(path) != sha}
            self.naive_blobs(changed)
            naive["api_calls"] += self.calls() - before
            naive["by_endpoint"] += self.endpoints() - endpoints
            naive["wall_s"] += time.monotonic() - started
            naive["truncated_listings"] += truncated
            previous = listing
        ours["wall_s"] = round(ours["wall_s"], 2)
        naive["wall_s"] = round(naive["wall_s"], 2)
        self.results["replay"] = {"commits": self.args.commits, "ours": ours, "naive": naive}

    def _connector(self) -> Any:
        from sync_jobs.connector import GitHubConnector
        from sync_jobs.redis_client import redis_connection

        return GitHubConnector(
            base_url=self.server.url,
            app_id=self.server.app_id,
            private_key=self.server.private_key_pem,
            redis=redis_connection(),
            installation_id=self.project.repository.installation.github_id,
            full_name="octo/big",
        )

    def naive_listing(self) -> tuple[dict[str, str], bool]:
        """What most hand-written syncs do: branch, then the recursive tree."""
        with self._connector() as gh:
            head = gh.branch_head("main")
            body, truncated = gh.tree(head.tree_sha, recursive=True)
        return {i["path"]: i["sha"] for i in body["tree"] if i["type"] == "blob"}, truncated

    def naive_blobs(self, shas: set[str]) -> None:
        with self._connector() as gh:
            for sha in shas:
                gh.blob(sha)

    def stop(self) -> None:
        self.ctx.pop()
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--directories", type=int, default=2_000)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(*args.worker)
        return
    import signal

    import redis

    # Let SIGTERM run the cleanup below (drop the database, free the Redis number).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    redis_url = claim_redis()
    db_name, database_url = create_database()
    bench = None
    try:
        with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
            bench = Bench(args, Path(tmp))
            bench.setup(database_url, redis_url)
            print(f"generated {args.files} files in {bench.results['generate_s']} s", flush=True)
            bench.first_sync()
            print("first sync", bench.results["first_sync"], flush=True)
            bench.results["noop"] = bench.sync()
            print("no-op sync", bench.results["noop"], flush=True)
            bench.one_deep_change()
            print("one deep change", bench.results["one_deep_change"], flush=True)
            bench.replay()
            print("replay", bench.results["replay"], flush=True)
            bench.stop()
    finally:
        from models import db

        try:
            db.session.remove()
            db.engine.dispose()  # type: ignore[attr-defined]
        except Exception:
            pass
        drop_database(db_name)
        redis.Redis.from_url(redis_url).flushdb()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"sync-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(bench.results if bench else {}, indent=2))
    print(json.dumps(bench.results if bench else {}, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()

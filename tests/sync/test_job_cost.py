"""The worker warms what a sync needs before it forks: a real ``python -m worker``
runs probe jobs (``bench.job_cost.probe``) and a no-op sync in its
horses, against the test's database, Redis and the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flask import Flask

from bench.job_cost import OUT_ENV, PROBE
from models import ProjectSync, SyncStatus, SyncTrigger, db
from sync_jobs.pipeline import execute_sync
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync, syncs_queue
from tests.sync.conftest import Tracked

ROOT = Path(__file__).resolve().parents[2]
PROBES = 3


def worker_environment(app: Flask, out: Path) -> dict[str, str]:
    """The worker's settings, as its host would give them: the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "APP_"))}
    config = app.config
    env.update(
        DATABASE_URL=config["DATABASE_URL"],
        REDIS_URL=config["REDIS_URL"],
        REDIS_KEY_PREFIX=config["REDIS_KEY_PREFIX"],
        SECRET_KEY="test-secret-key",
        WEBHOOK_SECRET=",".join(config["WEBHOOK_SECRETS"]),
        GITHUB_API_URL=config["GITHUB_API_URL"],
        APP_ID=str(config["APP_ID"]),
        PRIVATE_KEY=config["PRIVATE_KEY"],
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env[OUT_ENV] = str(out)
    return env


def test_a_horse_starts_with_githubkit_and_the_job_modules_loaded(
    app_context: Flask, tracked: Tracked, tmp_path: Path
) -> None:
    first = tracked.new_sync(SyncTrigger.INSTALL)
    execute_sync(first)  # the sync in the horse below finds the head unchanged
    queue = syncs_queue(redis_connection())
    for _ in range(PROBES):
        queue.enqueue(PROBE, tracked.project_id, job_timeout=60)
    noop = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH)
    out = tmp_path / "probes.jsonl"
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker", "--burst"],
        cwd=tmp_path,
        env=worker_environment(app_context, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output.decode(errors="replace")

    probes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(probes) == PROBES, output.decode(errors="replace")
    for probe in probes:
        # Each ran in a horse forked from the worker, not in the worker itself.
        assert probe["ppid"] == worker.pid and probe["pid"] != worker.pid
        # githubkit's lazily loaded REST namespaces were there from the first line...
        assert {"repos", "git", "apps"} <= set(probe["rest_modules_at_first_line"])
        # ...the job's own modules too...
        assert probe["job_imports_modules"] == 0
        # ...so the first GitHub call imported nothing of githubkit.
        assert not [m for m in probe["first_call_modules"] if m.startswith("githubkit")]
        assert probe["first_call_import_ms"] < 50
    db.session.expire_all()
    sync = db.session.get_one(ProjectSync, noop.id)
    assert sync.status is SyncStatus.SUCCEEDED and sync.mode == "noop", sync.error

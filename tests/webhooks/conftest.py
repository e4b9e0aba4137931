"""Fixtures for the webhook receiver and delivery processing tests.

Payloads under ``payloads/`` were recorded from the emulator's webhook builders
(``github_emulator.events``); githubkit's models parse every one of them. They are sent
as GitHub sends them: compact JSON or a form-encoded ``payload`` field, signed over the
raw bytes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from githubkit.webhooks import sign
from redis import Redis
from rq import Queue, SimpleWorker
from werkzeug.test import TestResponse

from sync_jobs import installations
from sync_jobs.keys import ALL_QUEUES, DELIVERIES_QUEUE
from sync_jobs.redis_client import redis_connection
from tests.conftest import TEST_WEBHOOK_SECRET, unavailable

PAYLOADS = Path(__file__).parent / "payloads"
ROOT = Path(__file__).resolve().parents[2]

DEFAULT_BRANCHES = {
    "octo-org/widgets": "main",
    "octo-org/gadgets": "trunk",
    "octo-org/sprockets": "develop",
}
"""What GitHub answers for these repositories' default branch (the recorded ones)."""


def payload(name: str) -> dict[str, Any]:
    """A recorded payload by file stem, e.g. ``installation.created``."""
    return dict(json.loads((PAYLOADS / f"{name}.json").read_text()))


def encode(body: dict[str, Any], *, form: bool = False) -> tuple[bytes, str]:
    text = json.dumps(body, separators=(",", ":"))
    if form:
        return urlencode({"payload": text}).encode(), "application/x-www-form-urlencoded"
    return text.encode(), "application/json"


def signed_headers(
    event: str,
    raw: bytes,
    content_type: str,
    *,
    secret: str = TEST_WEBHOOK_SECRET,
    delivery_id: str | None = None,
) -> dict[str, str]:
    """The headers GitHub sends with a delivery."""
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "77",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": "4242",
        "X-Hub-Signature-256": sign(secret, raw, "sha256"),
        "X-Hub-Signature": sign(secret, raw, "sha1"),
        "User-Agent": "GitHub-Hookshot/emulator",
        "Content-Type": content_type,
    }


def deliver(
    client: FlaskClient,
    event: str,
    body: dict[str, Any],
    *,
    form: bool = False,
    secret: str = TEST_WEBHOOK_SECRET,
    delivery_id: str | None = None,
) -> TestResponse:
    raw, content_type = encode(body, form=form)
    headers = signed_headers(event, raw, content_type, secret=secret, delivery_id=delivery_id)
    return client.post("/webhooks/github", data=raw, headers=headers)


def run_delivery_jobs(app: Flask) -> int:
    """Run every queued delivery job in this process (RQ's SimpleWorker, burst mode);
    return how many jobs there were."""
    with app.app_context():
        connection = redis_connection()
        queue = Queue(DELIVERIES_QUEUE, connection=connection)
        count = queue.count
        SimpleWorker([queue], connection=connection).work(burst=True)
        assert queue.count == 0
        return count


def run_delivery_batches(app: Flask) -> int:
    """Run every queued delivery job as ``python -m worker`` does: in batches,
    in this process (burst mode); return how many jobs there were."""
    from sync_jobs.worker import SyncWorker

    with app.app_context():
        connection = redis_connection()
        queue = Queue(DELIVERIES_QUEUE, connection=connection)
        count = queue.count
        SyncWorker([queue], connection=connection, app=app).work(burst=True)
        assert queue.count == 0
        return count


def queued_count(app: Flask, name: str = DELIVERIES_QUEUE) -> int:
    with app.app_context():
        return Queue(name, connection=redis_connection()).count


@pytest.fixture
def default_branches() -> Iterator[dict[str, str]]:
    """Canned answers for the default-branch lookup installation events need."""
    original = installations.default_branch_lookup

    def lookup(*, installation_github_id: int, full_name: str) -> str:
        return DEFAULT_BRANCHES[full_name]

    installations.default_branch_lookup = lookup
    yield DEFAULT_BRANCHES
    installations.default_branch_lookup = original


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own, which it may stop and start at will."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                return
            except Exception:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path("/usr/bin/redis-server").exists():
        unavailable("redis-server binary not available to start a Redis this test can stop")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def worker_environment(app: Flask, tmp_path: Path) -> dict[str, str]:
    """Environment for a worker subprocess pointed at the test's database and Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "APP_"))}
    env.update(
        DATABASE_URL=app.config["DATABASE_URL"],
        REDIS_URL=app.config["REDIS_URL"],
        SECRET_KEY="test-secret-key",
        WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture
def rq_workers(app: Flask, tmp_path: Path) -> Iterator[Any]:
    """Start real ``rq worker`` processes (with the scheduler) on the test's Redis DB."""
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int = 1) -> None:
        for number in range(count):
            log = open(tmp_path / f"worker-{len(started)}.log", "wb")  # noqa: SIM115
            started.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "rq.cli",
                        "worker",
                        "--with-scheduler",
                        "--url",
                        app.config["REDIS_URL"],
                        "--worker-class",
                        "tests.webhooks.hooked_worker.HookedWorker",
                        "--name",
                        f"test-{os.getpid()}-{uuid.uuid4().hex[:6]}-{number}",
                        *ALL_QUEUES,
                    ],
                    cwd=tmp_path,
                    env=worker_environment(app, tmp_path),
                    stdout=log,
                    stderr=log,
                )
            )

    yield start
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

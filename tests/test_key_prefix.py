"""Two deployments on one Redis database, told apart by ``REDIS_KEY_PREFIX``.

Each deployment has its own database and its own real worker process
(``python -m worker``); a push delivered to one is processed by its own
worker only, and every key either writes carries its prefix.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import select

from models import DeliveryStatus, WebhookDelivery, db
from sync_jobs import keys
from tests.conftest import REDIS_CLAIM_KEY, TEST_WEBHOOK_SECRET, base_settings, reset_redis
from tests.webhooks.conftest import deliver, payload
from webhook_app import create_app
from webhook_app.config import settings_from_environment
from webhook_app.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PREFIXES = ("deploy-a", "deploy-b")

RQ_SHARED_KEYS = {b"rq:workers", b"rq:queues"}
"""RQ's own registries of every worker and queue in the database: shared by design, they
hold names (which carry the prefix), never jobs."""

RQ_SCHEDULER_KEY = re.compile(rb"rq:scheduler:[0-9a-f]{32}")
"""A worker's scheduler registers under a random name; its hash lists its queues."""


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def status_of(app: Flask, delivery_id: str) -> DeliveryStatus | None:
    with app.app_context():
        try:
            row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
            return row.status if row else None
        finally:
            db.session.remove()


@pytest.fixture
def deployments(redis_url: str, tmp_path: Path) -> Iterator[dict[str, Flask]]:
    """Two apps, each with its own SQLite database and prefix, on the same Redis db."""
    reset_redis(redis_url)
    apps = {}
    for prefix in PREFIXES:
        settings = base_settings(
            f"sqlite:///{tmp_path / f'{prefix}.sqlite3'}", redis_url, str(tmp_path)
        )
        apps[prefix] = create_app({**settings, "REDIS_KEY_PREFIX": prefix})
        with apps[prefix].app_context():
            db.create_all()
    yield apps
    for app in apps.values():
        with app.app_context():
            db.engine.dispose()
    keys.use_prefix(keys.DEFAULT_KEY_PREFIX)  # as the next app built here would
    reset_redis(redis_url)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[Flask], subprocess.Popen[bytes]]]:
    """``python -m worker`` for one deployment, configured as its host would."""
    started: list[subprocess.Popen[bytes]] = []

    def start(app: Flask) -> subprocess.Popen[bytes]:
        prefix = app.config["REDIS_KEY_PREFIX"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))}
        env.update(
            DATABASE_URL=app.config["DATABASE_URL"],
            REDIS_URL=app.config["REDIS_URL"],
            REDIS_KEY_PREFIX=prefix,
            SECRET_KEY="test-secret-key",
            WEBHOOK_SECRET=TEST_WEBHOOK_SECRET,
            APP_ID="",
            PYTHONPATH=str(ROOT),
        )
        log = open(tmp_path / f"worker-{prefix}.log", "wb")  # noqa: SIM115 - closed by the OS
        child = subprocess.Popen(
            [sys.executable, "-m", "worker"],
            cwd=tmp_path,  # no .env of the checkout
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(child)
        return child

    yield start
    for child in started:
        child.send_signal(signal.SIGTERM)
    for child in started:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def push_to(app: Flask) -> str:
    """Deliver a signed push to ``app``'s receiver; the delivery's id."""
    delivery_id = str(uuid.uuid4())
    response = deliver(app.test_client(), "push", payload("push"), delivery_id=delivery_id)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["status"] == "queued"
    return delivery_id


def unprefixed_keys(connection: Redis) -> list[bytes]:
    """Keys that name neither deployment (RQ's shared registries and the suite's claim
    marker aside; a scheduler's hash must list only one deployment's queues)."""
    stray = []
    for key in connection.scan_iter():
        if key in RQ_SHARED_KEYS or key == REDIS_CLAIM_KEY.encode():
            continue
        if RQ_SCHEDULER_KEY.fullmatch(key):
            queues = cast(bytes, connection.hget(key, "queues") or b"")
            if len({name.split(b"-")[1] for name in queues.split(b",")}) == 1:
                continue
        if not any(prefix.encode() in key for prefix in PREFIXES):
            stray.append(key)
    return stray


def test_a_push_is_processed_only_by_its_own_deployments_worker(
    deployments: dict[str, Flask],
    start_worker: Callable[[Flask], subprocess.Popen[bytes]],
    redis_url: str,
    tmp_path: Path,
) -> None:
    a, b = deployments["deploy-a"], deployments["deploy-b"]
    for_a, for_b = push_to(a), push_to(b)
    connection = Redis.from_url(redis_url)
    a_queue = Queue("deploy-a-deliveries", connection=connection)
    assert a_queue.job_ids == [f"deploy-a-delivery-{for_a}"]

    worker_b = start_worker(b)
    wait_until(lambda: status_of(b, for_b) is DeliveryStatus.IGNORED, "B's worker, B's push")
    # B's worker has been through its queues; A's push is still waiting, untouched.
    assert worker_b.poll() is None, (tmp_path / "worker-deploy-b.log").read_text()
    assert a_queue.job_ids == [f"deploy-a-delivery-{for_a}"]
    assert status_of(a, for_a) is DeliveryStatus.QUEUED
    assert status_of(b, for_a) is None and status_of(a, for_b) is None

    start_worker(a)
    wait_until(lambda: status_of(a, for_a) is DeliveryStatus.IGNORED, "A's worker, A's push")
    assert a_queue.count == 0

    assert unprefixed_keys(connection) == []
    own = [key for key in connection.scan_iter() if not key.startswith(b"rq:")]
    assert own, "the deliveries wrote metrics under each prefix"
    starts = (b"deploy-a:", b"deploy-b:", REDIS_CLAIM_KEY.encode())
    assert all(key.startswith(starts) for key in own), own
    members = cast(set[bytes], connection.smembers("rq:workers"))
    workers = sorted(member.decode() for member in members)
    assert [name.removeprefix("rq:worker:")[: len("deploy-a")] for name in workers] == [
        "deploy-a",
        "deploy-b",
    ]


def test_every_key_queue_and_job_id_of_an_app_carries_its_prefix(
    deployments: dict[str, Flask],
) -> None:
    app = deployments["deploy-a"]
    with app.app_context():
        names = [
            *keys.queue_names(),
            keys.delivery_job_id("d1"),
            keys.sync_job_id(1),
            keys.sync_pending_key(1),
            keys.sync_lock_key(1),
            keys.sweeper_lock_key(),
            keys.maintenance_lock_key("repair"),
            keys.sync_events_key(1),
            keys.installation_token_key(1, "o/r"),
            keys.session_key("digest"),
            keys.person_access_key("digest"),
            keys.setup_code_key(),
            keys.metric_key("syncs"),
        ]
        assert all(re.match(r"deploy-a[:-]", name) for name in names), names
        assert keys.queue_names() == (
            "deploy-a-deliveries",
            "deploy-a-syncs",
            "deploy-a-maintenance",
        )
    # Outside any app context a name follows the last app this process built.
    assert keys.sync_lock_key(1) == "deploy-b:sync:lock:1"


def test_the_default_prefix_keeps_the_names_deployments_already_have() -> None:
    assert settings_from_environment({}).get("REDIS_KEY_PREFIX") is None
    app = create_app({"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})
    with app.app_context():
        assert keys.queue_names() == (
            "project-sync-deliveries",
            "project-sync-syncs",
            "project-sync-maintenance",
        )
        assert keys.delivery_job_id("d1") == "project-sync-delivery-d1"
        assert keys.sync_lock_key(7) == "project-sync:sync:lock:7"


@pytest.mark.parametrize("value", ["a:b", "-leading-dash", "with space", "x" * 41, "é"])
def test_a_prefix_rq_cannot_name_a_queue_with_stops_the_start(value: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_KEY_PREFIX must be 1 to 40 letters"):
        settings_from_environment({"REDIS_KEY_PREFIX": value})


def test_a_valid_prefix_is_taken() -> None:
    assert settings_from_environment({"REDIS_KEY_PREFIX": "staging_2"})["REDIS_KEY_PREFIX"] == (
        "staging_2"
    )


DEFAULT_NAMES = {"DELIVERIES_QUEUE", "SYNCS_QUEUE", "MAINTENANCE_QUEUE", "ALL_QUEUES", "KEY_PREFIX"}
"""The default prefix's names in ``keys``: right only for a deployment without the setting."""

SPELLED_KEY = re.compile(r"""["']project-sync[:-]""")


def _default_names_used(tree: ast.AST) -> list[int]:
    """Lines importing or reading ``keys``' default-prefix names."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sync_jobs.keys":
            lines += [node.lineno for alias in node.names if alias.name in DEFAULT_NAMES]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in DEFAULT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "keys"
        ):
            lines.append(node.lineno)
    return lines


def test_only_keys_spells_a_redis_name() -> None:
    """App code names keys and queues through ``keys``' functions, which follow the
    prefix; the default-prefix constants are for tests and tools only."""
    offenders = []
    for package in ("sync_jobs", "webhook_app", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.relative_to(ROOT) == Path("sync_jobs/keys.py"):
                continue
            text = path.read_text()
            lines = text.splitlines()
            numbers = _default_names_used(ast.parse(text))
            numbers += [n for n, line in enumerate(lines, 1) if SPELLED_KEY.search(line)]
            offenders += [f"{path.relative_to(ROOT)}:{n}: {lines[n - 1].strip()}" for n in numbers]
    assert offenders == []

"""Imports go one way: the web app -> ``sync_jobs`` -> ``models``; the worker brings the app.

Importing the jobs side or the models must load no module of the web package (checked
in a fresh interpreter, where nothing else has imported it first), and their source
does not even name it. A job takes its app context from the worker that runs it, which
got its app from the top-level entry point.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app
from rq import Queue
from rq.job import Job
from sqlalchemy import select

import models
import sync_jobs
from models import DeliveryStatus, WebhookDelivery, db
from sync_jobs.deliveries import deliveries_queue, enqueue_delivery
from sync_jobs.keys import SYNCS_QUEUE
from sync_jobs.redis_client import redis_connection
from sync_jobs.worker import SyncWorker
from webhook_app import create_app

ROOT = Path(__file__).resolve().parent.parent
WEB_PACKAGE = "webhook_app"
LOWER_PACKAGES = (sync_jobs, models)
PROBE_SETTING = "TEST_LAYERS_PROBE"


def web_modules_loaded_by(*modules: str) -> list[str]:
    """The web package's modules a fresh interpreter has loaded after importing ``modules``."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == {WEB_PACKAGE!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_the_worker_and_the_jobs_import_without_the_web_app() -> None:
    loaded = web_modules_loaded_by(
        "sync_jobs.pipeline", "sync_jobs.worker", "sync_jobs.deliveries", "models"
    )
    assert loaded == []


def test_no_module_of_the_jobs_or_the_models_loads_the_web_app() -> None:
    names = [
        info.name
        for package in LOWER_PACKAGES
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    ]
    assert "sync_jobs.routing" in names and "sync_jobs.worker" in names
    assert web_modules_loaded_by(*names) == []


def test_the_source_of_the_jobs_and_the_models_never_names_the_web_package() -> None:
    mentions = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for package in LOWER_PACKAGES
        for path in sorted(Path(package.__path__[0]).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if WEB_PACKAGE in line
    ]
    assert mentions == []


def test_the_old_worker_command_says_where_the_worker_starts_now() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sync_jobs.worker"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "python -m worker" in done.stderr


def worker_app_probe() -> str | None:
    """A job: the probe setting of the app whose context it runs in."""
    return current_app.config.get(PROBE_SETTING)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_worker_runs_each_job_in_its_own_apps_context(
    app: Flask, app_settings: dict[str, Any], tmp_path: Path
) -> None:
    """The worker pushes its app's context, in a forked horse and around a delivery batch
    in its own process, whatever context its caller has (here the test app's, on
    another database: a job run in it would not find the worker's delivery)."""
    worker_app = create_app(
        {**app_settings, "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.sqlite3'}"}
    )
    token = uuid.uuid4().hex
    worker_app.config[PROBE_SETTING] = token
    delivery_id = str(uuid.uuid4())
    with worker_app.app_context():
        db.create_all()
        db.session.add(
            WebhookDelivery(
                delivery_id=delivery_id, event="star", payload="{}", status=DeliveryStatus.QUEUED
            )
        )
        db.session.commit()
    redis = redis_connection(app)
    enqueue_delivery(deliveries_queue(redis), delivery_id=delivery_id)
    syncs = Queue(SYNCS_QUEUE, connection=redis)
    probe = syncs.enqueue(f"{__name__}.{worker_app_probe.__name__}")
    assert worker_app_probe() is None  # the caller's context is the test app's
    SyncWorker([deliveries_queue(redis), syncs], connection=redis, app=worker_app).work(burst=True)

    assert Job.fetch(probe.id, connection=redis).return_value() == token
    with worker_app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
        assert row is not None and row.status is DeliveryStatus.IGNORED

"""The whole app as it is deployed: ``flask db upgrade``, gunicorn and an RQ worker as
separate processes, the GitHub emulator sending real signed webhooks to gunicorn."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flask import Flask
from sqlalchemy import select

from github_emulator.history import HistoryGenerator, push
from github_emulator.server import EmulatorServer
from models import Project, Repository, db
from tests.conftest import base_settings, reset_redis
from webhook_app import create_app

ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll until ``check`` returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Stack:
    """The running processes, the environment they share, and a view of their database."""

    url: str
    env: dict[str, str]
    app: Flask
    github: EmulatorServer
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path | None = None

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        assert self.logs is not None
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        assert self.logs is not None
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def stack(
    empty_database_url: str, redis_url: str, github_emulator: EmulatorServer, tmp_path: Path
) -> Iterator[Stack]:
    reset_redis(redis_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "APP_", "PRIVATE_"))}
    env.update(
        PORT=str(port),
        DATABASE_URL=empty_database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="e2e",
        APP_ID=str(github_emulator.app_id),
        PRIVATE_KEY=github_emulator.private_key_pem,
        WEBHOOK_SECRET=github_emulator.webhook_secret,
        GITHUB_API_URL=github_emulator.url,
        WEB_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
    )
    github_emulator.webhook_url = f"{url}/webhooks/github"
    settings = base_settings(empty_database_url, redis_url, str(tmp_path))
    settings.update(
        GITHUB_API_URL=github_emulator.url,
        APP_ID=github_emulator.app_id,
        PRIVATE_KEY=github_emulator.private_key_pem,
    )
    running = Stack(url, env, create_app(settings), github_emulator, logs=tmp_path)

    release = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert release.returncode == 0, release.stderr
    running.start("web", "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app")
    running.start("worker", "-m", "worker")

    def ready() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(ready, "gunicorn to answer /readyz", STARTUP_SECONDS)
        yield running
    finally:
        running.stop()
        with running.app.app_context():
            db.engine.dispose()


def query(stack: Stack, function: Callable[[], Any]) -> Any:
    """Run ``function`` against the stack's database in a fresh session."""
    with stack.app.app_context():
        try:
            return function()
        finally:
            db.session.remove()


def install_and_first_sync(
    stack: Stack, work: Path, name: str, *, files: int, directories: int, seed: int
) -> tuple[Any, HistoryGenerator, int]:
    """A generated repository ``octo/<name>`` pushed to the emulator, the App installed
    on it, and its first sync done: the repository record, its history and project id."""
    github = stack.github
    record = github.create_repository("octo", name)
    history = HistoryGenerator(work, seed=seed)
    history.initial_commit(files=files, directories=directories)
    push(history.work_dir, github.clone_url(record))
    github.install("octo", [record])

    def project_id() -> int | None:
        return db.session.scalar(
            select(Project.id).join(Repository).where(Repository.github_id == record.id)
        )

    pid = wait_for(lambda: query(stack, project_id), "the installation to create a project")
    wait_for(
        lambda: query(stack, lambda: db.session.get_one(Project, pid).current_sync_id),
        "the first sync",
    )
    return record, history, int(pid)

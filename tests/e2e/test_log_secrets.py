"""No secret in any log line of a full run: gunicorn (access log on, DEBUG), an RQ worker
and the maintenance process, with sign-in, a sync, an action, the API with a bearer
token, an event stream, a forged delivery and sign-out. The webhook secret, the App's
private key and client secret, every installation token, user token and refresh token
the emulator issued, the OAuth codes and the session cookie are looked for verbatim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from github_emulator.history import HistoryGenerator, push
from github_emulator.server import EmulatorServer
from models import Project, Repository, db
from tests.conftest import base_settings, reset_redis
from webhook_app import create_app

from .conftest import ROOT, STARTUP_SECONDS, Stack, free_port, query, wait_for


@pytest.fixture
def signed_stack(
    empty_database_url: str, redis_url: str, github_emulator: EmulatorServer, tmp_path: Path
) -> Iterator[Stack]:
    """The deployed processes with sign-in configured and every log as loud as it gets."""
    reset_redis(redis_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    github_emulator.app.expiring_user_tokens = True  # refresh tokens issued, too
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "APP_", "PRIVATE_"))}
    env.update(
        PORT=str(port),
        DATABASE_URL=empty_database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="e2e-secret-key-for-sessions",
        APP_ID=str(github_emulator.app_id),
        PRIVATE_KEY=github_emulator.private_key_pem,
        WEBHOOK_SECRET=github_emulator.webhook_secret,
        GITHUB_API_URL=github_emulator.url,
        GITHUB_CLIENT_ID=github_emulator.app.client_id,
        GITHUB_CLIENT_SECRET=github_emulator.app.client_secret,
        WEB_CONCURRENCY="1",
        WEB_ACCESS_LOG="1",
        LOG_LEVEL="DEBUG",
        REPAIR_INTERVAL_SECONDS="2",
        RECONCILE_INTERVAL_SECONDS="2",
        REDELIVER_INTERVAL_SECONDS="2",
        PYTHONUNBUFFERED="1",
    )
    github_emulator.webhook_url = f"{url}/webhooks/github"
    settings = base_settings(empty_database_url, redis_url, str(tmp_path))
    settings.update(GITHUB_API_URL=github_emulator.url, APP_ID=github_emulator.app_id,
                    PRIVATE_KEY=github_emulator.private_key_pem)
    running = Stack(url, env, create_app(settings), github_emulator, logs=tmp_path)
    release = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi:app", "db", "upgrade"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert release.returncode == 0, release.stderr
    (tmp_path / "release.log").write_text(release.stdout + release.stderr)
    running.start("web", "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app")
    running.start("worker", "-m", "worker")
    running.start("maintenance", "-m", "flask", "--app", "wsgi:app", "maintenance", "run")

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


def sign_in(web: httpx.Client, github: EmulatorServer, login: str) -> list[str]:
    """The browser's round trip; returns the OAuth codes it carried."""
    start = web.get("/login", params={"next": "/"})
    authorize = httpx.get(start.headers["Location"] + f"&login={login}")
    callback = authorize.headers["Location"]
    codes = re.findall(r"[?&]code=([^&]+)", callback)
    assert web.get(callback.removeprefix(str(web.base_url).rstrip("/"))).status_code == 302
    return codes


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_no_log_line_holds_a_secret(signed_stack: Stack, tmp_path: Path) -> None:
    github = signed_stack.github
    record = github.create_repository("octo", "secrets", private=True)
    history = HistoryGenerator(tmp_path / "work", seed=3)
    history.initial_commit(files=30, directories=4)
    push(history.work_dir, github.clone_url(record))
    github.install("octo", [record], members=("alice",))
    github.grant(record, "alice", "write")

    def project_id() -> int | None:
        return db.session.scalar(
            select(Project.id).join(Repository).where(Repository.github_id == record.id)
        )

    pid = wait_for(lambda: query(signed_stack, project_id), "the project")
    wait_for(lambda: query(signed_stack, lambda: db.session.get_one(Project, pid).current_sync_id),
             "the first sync")

    web = httpx.Client(base_url=signed_stack.url)
    codes = sign_in(web, github, "alice")
    page = web.get(f"/projects/{pid}")
    assert page.status_code == 200 and "Resync now" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    resync = web.post(f"/projects/{pid}/resync", data={"csrf_token": csrf.group(1)})
    assert resync.status_code == 303
    user_tokens = [t for t, v in github.state.tokens.items() if v.user_login == "alice"]
    assert user_tokens
    script = httpx.get(f"{signed_stack.url}/api/v1/projects",
                       headers={"Authorization": f"Bearer {user_tokens[-1]}"})
    assert script.status_code == 200 and script.json()["items"]
    status = web.get(f"/api/v1/projects/{pid}/status").json()
    sync_id = status["current_sync"]["id"]
    with web.stream("GET", f"/api/v1/events/project-sync/{sync_id}") as stream:
        assert any(line.startswith("event: final") for line in stream.iter_lines())
    history.commit_random_change()
    push(history.work_dir, github.clone_url(record))
    head = history.head
    wait_for(lambda: query(signed_stack, lambda: db.session.get_one(Project, pid)
                           .current_sync.head_commit_sha == head), "the push to be synced")
    forged = httpx.post(f"{signed_stack.url}/webhooks/github", content=b"{}", headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": "00000000-0000-4000-8000-000000000001",
        "X-Hub-Signature-256": "sha256=" + "0" * 64, "Content-Type": "application/json"})
    assert forged.status_code == 401
    cookie = web.cookies.get("session")
    assert cookie
    time.sleep(3)  # a round of every maintenance pass (2 s intervals)
    secrets = {
        "webhook secret": [github.webhook_secret],
        "client secret": [github.app.client_secret],
        "session secret key": [signed_stack.env["SECRET_KEY"]],
        "session cookie": [cookie],
        "oauth code": codes,
        "refresh token": list(github.state.refresh_tokens),
        "installation token": [t for t, v in github.state.tokens.items() if v.installation_id],
    }
    assert web.post("/logout", data={"csrf_token": csrf.group(1)}).status_code == 302
    secrets["user token"] = [*user_tokens, *github.state.revoked_tokens]
    assert secrets["installation token"] and secrets["refresh token"]
    pem_lines = [line for line in github.private_key_pem.splitlines()
                 if len(line) > 20 and "PRIVATE KEY" not in line]
    secrets["private key"] = pem_lines
    signed_stack.stop()
    logs = {name: signed_stack.log(name) for name in ("web", "worker", "maintenance", "release")}
    assert "GET /projects/" in logs["web"], "the access log is on"
    for name, text in logs.items():
        for kind, values in secrets.items():
            for value in values:
                assert value not in text, f"{kind} in the {name} log"

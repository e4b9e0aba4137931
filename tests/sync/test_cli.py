"""``flask sync`` and ``flask untrack`` against the emulator: a repository discovered
and synced, one-line errors that leave no rows, the local demo's configuration."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import Result
from flask import Flask
from sqlalchemy import func, select

from github_emulator.history import HistoryGenerator, push
from github_emulator.server import EmulatorServer
from models import Installation, Project, ProjectSync, Repository, SyncStatus, db
from tests.conftest import base_settings
from tests.sync.conftest import git_tree, stored_state
from webhook_app import create_app


def _repository(server: EmulatorServer, tmp_path: Path, name: str = "cli") -> tuple[Any, str]:
    record = server.create_repository("octo", name)
    server.install("octo", [record])
    history = HistoryGenerator(tmp_path / name, seed=3)
    history.initial_commit(files=30, directories=5)
    push(history.work_dir, server.clone_url(record))
    assert history.head is not None
    return record, history.head


def _rows(app: Flask) -> dict[str, int]:
    with app.app_context():
        return {
            model.__name__: db.session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Installation, Repository, Project, ProjectSync)
        }


def _one_line_error(result: Result, *needles: str) -> None:
    """Exit code 1 and exactly one line of output, an error naming every needle."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], result.output


def test_flask_sync_discovers_the_repository_and_syncs_it(
    app: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    record, head = _repository(github_emulator, tmp_path)

    result = app.test_cli_runner().invoke(args=["sync", "octo/cli"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "API calls" in result.output
    with app.app_context():
        project = db.session.scalars(select(Project)).one()
        sync = db.session.get_one(ProjectSync, project.current_sync_id)
        assert sync.status is SyncStatus.SUCCEEDED and project.branch == "main"
        expected = git_tree(github_emulator.git(record).path, head)
        assert stored_state(project.id) == expected
    before = _rows(app)

    again = app.test_cli_runner().invoke(args=["sync", "octo/cli", "--branch", "nope"])
    _one_line_error(again, "'nope'", "does not exist")
    assert _rows(app) == before  # no project "nope", no failed sync


def test_flask_sync_of_a_repository_github_does_not_know_leaves_nothing(
    app: Flask, github_emulator: EmulatorServer
) -> None:
    result = app.test_cli_runner().invoke(args=["sync", "nobody/nothing"])
    _one_line_error(result, "nobody/nothing", "does not exist on GitHub")
    assert _rows(app) == {"Installation": 0, "Repository": 0, "Project": 0, "ProjectSync": 0}


def test_flask_sync_refuses_a_name_that_is_no_repository(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["sync", "just-a-name"])
    _one_line_error(result, "owner/repo")
    assert _rows(app)["Project"] == 0


def test_flask_sync_of_an_empty_repository_leaves_nothing(
    app: Flask, github_emulator: EmulatorServer
) -> None:
    github_emulator.install("octo", [github_emulator.create_repository("octo", "empty")])
    result = app.test_cli_runner().invoke(args=["sync", "octo/empty"])
    _one_line_error(result, "empty")
    assert _rows(app) == {"Installation": 0, "Repository": 0, "Project": 0, "ProjectSync": 0}


@pytest.fixture
def unconfigured_app(
    database_url: str, redis_url: str, tmp_path: Path, app: Flask
) -> Iterator[Flask]:
    """An app with no App configured, on the ``app`` fixture's database and Redis (which
    that fixture creates and cleans); its demo credentials file does not exist yet.

    Its context is pushed over the one pytest-flask pushes for ``app``, so commands
    run in it (``with_appcontext`` keeps a context already there)."""
    settings = base_settings(database_url, redis_url, str(tmp_path))
    settings["DEMO_CREDENTIALS_FILE"] = str(tmp_path / "demo" / "app.json")
    application = create_app(settings)
    with application.app_context():
        yield application
        db.session.remove()
        db.engine.dispose()


def test_flask_sync_without_an_app_is_one_line_before_any_row(unconfigured_app: Flask) -> None:
    result = unconfigured_app.test_cli_runner().invoke(args=["sync", "octo/cli"])
    _one_line_error(result, "The GitHub App is not configured")
    assert _rows(unconfigured_app) == {
        "Installation": 0,
        "Repository": 0,
        "Project": 0,
        "ProjectSync": 0,
    }


def test_flask_sync_uses_the_local_demo_when_no_app_is_configured(
    unconfigured_app: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """``make run`` writes the demo App's credentials and URL under the instance folder
    and gives them to its worker; the command reads the same file."""
    record, head = _repository(github_emulator, tmp_path, name="sample")
    credentials = Path(unconfigured_app.config["DEMO_CREDENTIALS_FILE"])
    credentials.parent.mkdir(parents=True)
    credentials.write_text(
        json.dumps(
            {
                "app_id": github_emulator.app_id,
                "private_key_pem": github_emulator.private_key_pem,
                "api_url": github_emulator.url,
            }
        )
    )
    result = unconfigured_app.test_cli_runner().invoke(args=["sync", "octo/sample"])
    assert result.exit_code == 0, result.output
    assert f"using the demo GitHub at {github_emulator.url}" in result.output
    with unconfigured_app.app_context():
        project = db.session.scalars(select(Project)).one()
        assert project.current_sync is not None
        assert project.current_sync.head_commit_sha == head
        assert stored_state(project.id) == git_tree(github_emulator.git(record).path, head)


def test_flask_untrack_stops_tracking_and_sync_tracks_again(
    app: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    _repository(github_emulator, tmp_path)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["sync", "octo/cli"]).exit_code == 0

    result = runner.invoke(args=["untrack", "octo/cli", "--branch", "main"])
    assert result.exit_code == 0, result.output
    assert "untracked octo/cli@main" in result.output
    with app.app_context():
        project = db.session.scalars(select(Project)).one()
        assert not project.tracked and project.untracked_at is not None
        assert project.current_sync_id is not None  # history kept
    again = runner.invoke(args=["untrack", "octo/cli"])
    assert again.exit_code == 0 and "already untracked" in again.output

    _one_line_error(runner.invoke(args=["untrack", "octo/cli", "--branch", "dev"]), "octo/cli@dev")
    _one_line_error(runner.invoke(args=["untrack", "nobody/nothing"]), "nobody/nothing")

    back = runner.invoke(args=["sync", "octo/cli"])
    assert back.exit_code == 0, back.output
    assert "tracking octo/cli@main again" in back.output
    with app.app_context():
        project = db.session.scalars(select(Project)).one()
        assert project.tracked and project.untracked_at is None


def test_flask_sync_in_the_demo_uses_the_redis_make_run_started(
    unconfigured_app: Flask,
    github_emulator: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``make run`` starts a Redis of its own on a port it chose and names it in
    ``run.json``; the command must take that one, not whatever answers on 6379."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    _repository(github_emulator, tmp_path, name="sample")
    credentials = Path(unconfigured_app.config["DEMO_CREDENTIALS_FILE"])
    credentials.parent.mkdir(parents=True)
    credentials.write_text(
        json.dumps(
            {
                "app_id": github_emulator.app_id,
                "private_key_pem": github_emulator.private_key_pem,
                "api_url": github_emulator.url,
            }
        )
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        demo_redis = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(demo_redis)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.1)
        (credentials.parent.parent / "run.json").write_text(json.dumps({"redis_url": demo_redis}))

        result = unconfigured_app.test_cli_runner().invoke(args=["sync", "octo/sample"])

        assert result.exit_code == 0, result.output
        assert unconfigured_app.config["REDIS_URL"] == demo_redis
        assert client.dbsize() > 0, "the sync wrote nothing to make run's Redis"
    finally:
        server.terminate()
        server.wait(timeout=10)

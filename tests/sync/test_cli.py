from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import select

from github_emulator.history import HistoryGenerator, push
from github_emulator.server import EmulatorServer
from models import Project, ProjectSync, SyncStatus, db
from tests.sync.conftest import git_tree, stored_state


def test_flask_sync_discovers_the_repository_and_syncs_it(
    app: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    record = github_emulator.create_repository("octo", "cli")
    github_emulator.install("octo", [record])
    history = HistoryGenerator(tmp_path / "w", seed=3)
    history.initial_commit(files=30, directories=5)
    push(history.work_dir, github_emulator.clone_url(record))

    result = app.test_cli_runner().invoke(args=["sync", "octo/cli"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "API calls" in result.output
    with app.app_context():
        project = db.session.scalars(select(Project)).one()
        sync = db.session.get_one(ProjectSync, project.current_sync_id)
        assert sync.status is SyncStatus.SUCCEEDED and project.branch == "main"
        expected = git_tree(github_emulator.git(record).path, history.head or "")
        assert stored_state(project.id) == expected

    again = app.test_cli_runner().invoke(args=["sync", "octo/cli", "--branch", "nope"])
    assert again.exit_code != 0
    assert "does not exist" in again.output

"""Fixtures of the API, event-stream and page tests: a synced project on the emulator,
plus rows made directly for the cases that need no GitHub."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from rq import SimpleWorker

from github_emulator.server import EmulatorServer
from models import Installation, Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db
from sync_jobs.keys import SYNCS_QUEUE
from sync_jobs.pipeline import execute_sync
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import syncs_queue

# The sync suite's settings: the emulator as GitHub, and the size limit its oracle assumes.
from tests.sync.conftest import Tracked, app_settings, track  # noqa: F401


@pytest.fixture
def synced(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> Iterator[Tracked]:
    """A project with two successful syncs (the second after one more commit)."""
    tracked = track(github_emulator, tmp_path / "work", files=12, directories=3)
    execute_sync(tracked.new_sync(SyncTrigger.INSTALL))
    tracked.history.commit_random_change()
    tracked.push()
    execute_sync(tracked.new_sync())
    yield tracked


def run_queued_jobs() -> None:
    """Run every queued sync job in this process, as a worker would."""
    worker = SimpleWorker([syncs_queue(redis_connection())], connection=redis_connection())
    worker.work(burst=True)


def queued_job_ids() -> list[str]:
    return syncs_queue(redis_connection()).get_job_ids()


def make_project(
    *, installation_github_id: int = 101, full_name: str = "octo/plain", branch: str = "main"
) -> Project:
    """A project with rows only (no GitHub behind it)."""
    installation = db.session.query(Installation).filter_by(
        github_id=installation_github_id
    ).one_or_none() or Installation(github_id=installation_github_id, account_login="octo")
    repository = db.session.query(Repository).filter_by(full_name=full_name).one_or_none()
    if repository is None:
        repository = Repository(
            github_id=zlib.crc32(full_name.encode()),
            installation=installation,
            full_name=full_name,
        )
    project = Project(repository=repository, branch=branch)
    db.session.add_all([installation, repository, project])
    db.session.commit()
    return project


def add_sync(project: Project, status: SyncStatus, **fields: Any) -> ProjectSync:
    sync = ProjectSync(project_id=project.id, trigger=SyncTrigger.MANUAL, status=status, **fields)
    db.session.add(sync)
    db.session.commit()
    return sync


__all__ = ["SYNCS_QUEUE", "add_sync", "make_project", "queued_job_ids", "run_queued_jobs"]

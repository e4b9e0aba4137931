"""Untracked projects and auto-sync off under the maintenance passes, and untracking
while a sync of the project runs, against the emulator."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from github_emulator.server import EmulatorServer
from models import Project, ProjectSync, SyncStatus, SyncTrigger, db
from sync_jobs.pipeline import execute_sync
from sync_jobs.reconcile import reconcile_branches
from sync_jobs.redis_client import redis_connection
from sync_jobs.repair import repair_syncs
from sync_jobs.scheduling import request_sync
from sync_jobs.sync_job import run_sync
from tests.sync.conftest import Tracked, assert_matches_git, track
from webhook_app.api_actions import set_auto_sync, untrack_branch


def _project(project_id: int) -> Project:
    return db.session.get_one(Project, project_id, populate_existing=True)


def _syncs(project_id: int) -> list[ProjectSync]:
    db.session.expire_all()
    return list(db.session.scalars(select(ProjectSync).where(ProjectSync.project_id == project_id)))


def _synced_then_moved(server: EmulatorServer, work: Path, name: str) -> Tracked:
    tracked = track(server, work, name=name, files=6, directories=2)
    execute_sync(tracked.new_sync(SyncTrigger.INSTALL))
    tracked.history.commit_random_change()
    tracked.push()
    return tracked


def test_reconcile_resyncs_only_tracked_projects_with_auto_sync_on(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    plain = _synced_then_moved(github_emulator, tmp_path / "plain", "plain")
    manual = _synced_then_moved(github_emulator, tmp_path / "manual", "manual")
    gone = _synced_then_moved(github_emulator, tmp_path / "gone", "gone")
    set_auto_sync(_project(manual.project_id), False)
    untrack_branch(_project(gone.project_id))
    counts = {t.project_id: len(_syncs(t.project_id)) for t in (plain, manual, gone)}

    assert reconcile_branches() == 1
    assert len(_syncs(plain.project_id)) == counts[plain.project_id] + 1
    assert len(_syncs(manual.project_id)) == counts[manual.project_id]
    assert len(_syncs(gone.project_id)) == counts[gone.project_id]
    assert _project(gone.project_id).reconciled_at is None  # not even polled


def test_repair_asks_no_first_sync_of_an_untracked_project(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    tracked = track(github_emulator, tmp_path / "w", name="never", files=3)
    untrack_branch(_project(tracked.project_id))
    assert repair_syncs(redis_connection(), confirm_seconds=0).first_syncs == 0
    assert _syncs(tracked.project_id) == []
    _project(tracked.project_id).tracked = True
    db.session.commit()
    assert repair_syncs(redis_connection(), confirm_seconds=0).first_syncs == 1


def test_untracking_while_a_sync_runs_lets_it_finish_cleanly(
    app: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    """The running sync applies in one transaction and the untrack changes only the
    tracking columns: the sync ends succeeded at the head, the project untracked and
    pointing at that sync, the state equal to git's; no follow-up sync appears."""
    with app.app_context():
        tracked = _synced_then_moved(github_emulator, tmp_path / "w", "busy")
        for _ in range(20):
            tracked.history.commit_random_change()
        head = tracked.push()
        sync = request_sync(tracked.project_id, trigger=SyncTrigger.MANUAL)
        sync_id = sync.id
    github_emulator.knobs.latency = 0.1  # every API call takes a while: a window to act in

    def work() -> None:
        with app.app_context():  # as the worker runs jobs: in its app's context
            run_sync(sync_id)

    runner = threading.Thread(target=work)
    runner.start()
    try:
        with app.app_context():
            deadline = time.monotonic() + 30
            while (status := db.session.get_one(ProjectSync, sync_id, populate_existing=True)
                   .status) is not SyncStatus.RUNNING:
                assert status is SyncStatus.QUEUED, f"the sync ended {status} before the untrack"
                assert time.monotonic() < deadline, "the sync never started"
                db.session.rollback()
                time.sleep(0.02)
            untrack_branch(_project(tracked.project_id))
    finally:
        runner.join(timeout=60)
        github_emulator.knobs.latency = 0.0
    assert not runner.is_alive()
    with app.app_context():
        done = db.session.get_one(ProjectSync, sync_id, populate_existing=True)
        assert done.status is SyncStatus.SUCCEEDED, done.error
        assert done.head_commit_sha == head
        project = _project(tracked.project_id)
        assert not project.tracked and project.current_sync_id == sync_id
        assert_matches_git(tracked, head)
        unfinished = [s for s in _syncs(tracked.project_id) if not s.status.is_final]
        assert unfinished == []

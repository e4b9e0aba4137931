from __future__ import annotations

from models import ProjectSync, SyncStatus, db
from sync_jobs.pipeline import execute_sync
from tests.sync.conftest import Tracked, assert_matches_git, assert_single_chain


def test_first_sync_then_a_change(tracked: Tracked) -> None:
    sync_id = tracked.new_sync()
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    assert_matches_git(tracked, tracked.history.head)
    tracked.history.commit_random_change()
    head = tracked.push()
    second = tracked.new_sync()
    execute_sync(second)
    sync2 = db.session.get_one(ProjectSync, second)
    assert sync2.status is SyncStatus.SUCCEEDED, sync2.error
    assert sync2.mode.startswith("delta")
    assert_matches_git(tracked, head)
    assert_single_chain(tracked.project_id)

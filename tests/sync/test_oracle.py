"""The oracle: generated histories replayed push by push, checked against git itself."""

from __future__ import annotations

from pathlib import Path

from github_emulator.server import EmulatorServer
from models import Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db
from sync_jobs.pipeline import execute_sync
from sync_jobs.restore import restore_sync
from tests.sync.conftest import (
    Tracked,
    assert_matches_git,
    assert_single_chain,
    stored_state,
    track,
)


def run(tracked: Tracked, *, full: bool = False) -> ProjectSync:
    sync_id = tracked.new_sync()
    execute_sync(sync_id, full=full)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    return sync


def replay(tracked: Tracked, commits: int) -> list[tuple[ProjectSync, str]]:
    """Push ``commits`` generated commits one at a time (every fifth one a force push
    that rewrites the last commit), syncing and checking after each."""
    done = [(run(tracked), tracked.history.head or "")]
    assert_matches_git(tracked, done[0][1])
    for number in range(1, commits + 1):
        if number % 5 == 0:
            tracked.history.force_push_rewrite(drop=1)
            head = tracked.push(force=True)
        else:
            tracked.history.commit_random_change()
            head = tracked.push()
        sync = run(tracked)
        assert sync.mode is not None and sync.mode.startswith("delta"), sync.mode
        assert_matches_git(tracked, head)
        done.append((sync, head))
    return done


def test_replayed_history_matches_git_after_every_push(
    tracked: Tracked, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    done = replay(tracked, 12)
    chain = assert_single_chain(tracked.project_id)
    assert [s.id for s in reversed(chain)] == [s.id for s, _ in done]

    # A fresh project on the same repository syncs the same head in full (tarball
    # first, since none of its blobs are stored) and ends in the identical state.
    original = db.session.get_one(Repository, tracked.repository_id)
    twin_repository = Repository(
        github_id=original.github_id + 10_000,
        installation_id=original.installation_id,
        full_name=original.full_name,
    )
    twin_project = Project(repository=twin_repository, branch="main")
    db.session.add_all([twin_repository, twin_project])
    db.session.commit()
    twin = Tracked(
        github_emulator,
        tracked.history,
        tracked.git_dir,
        tracked.clone_url,
        twin_project.id,
        twin_repository.id,
    )
    full = run(twin)
    assert full.mode is not None and full.mode.startswith("full"), full.mode
    assert stored_state(twin.project_id) == stored_state(tracked.project_id)
    assert_matches_git(twin, done[-1][1])

    # Restoring sync k gives exactly the state after sync k, without any GitHub call.
    for k in (3, 0, 7):
        past, head = done[k]
        before = tracked.requests()
        restored = restore_sync(tracked.project_id, from_sync_id=past.id)
        assert restored.status is SyncStatus.SUCCEEDED, restored.error
        assert restored.trigger is SyncTrigger.RESTORE
        assert restored.restored_from_sync_id == past.id
        assert tracked.requests() == before
        assert restored.api_calls == 0
        assert stored_state(tracked.project_id) == stored_state(tracked.project_id, past)
        assert_matches_git(tracked, head)
    assert_single_chain(tracked.project_id)

    # After a restore, the next push syncs incrementally from the restored state.
    tracked.history.commit_random_change()
    head = tracked.push()
    after = run(tracked)
    assert after.mode is not None and after.mode.startswith("delta")
    assert_matches_git(tracked, head)


def test_full_and_delta_syncs_of_the_same_head_agree(tracked: Tracked) -> None:
    replay(tracked, 4)
    delta_state = stored_state(tracked.project_id)
    tracked.history.commit_random_change()
    head = tracked.push()
    forced_full = run(tracked, full=True)
    assert forced_full.mode is not None and forced_full.mode.startswith("full")
    assert forced_full.full_sync_reason == "a full sync was requested"
    assert_matches_git(tracked, head)
    assert delta_state  # the earlier state was real


def test_noop_sync_costs_one_call_and_does_not_grow_the_lineage(tracked: Tracked) -> None:
    run(tracked)
    before = tracked.requests()
    sync = run(tracked)
    assert tracked.requests() - before == 1
    assert sync.api_calls == 1 and sync.mode == "noop" and sync.sequence is None
    assert len(assert_single_chain(tracked.project_id)) == 1


def test_second_project_of_a_repository_reuses_stored_blobs(
    app_context: object, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    tracked = track(github_emulator, tmp_path / "w", name="big", files=300, directories=30)
    run(tracked)
    tracked.history.commit_random_change()
    tracked.push()
    before = tracked.requests()
    sync = run(tracked)
    assert sync.api_calls == tracked.requests() - before
    assert sync.api_calls <= 12

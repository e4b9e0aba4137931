"""Failures a sync must survive: races, kills, rate limits, 5xx bursts, odd repositories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text

from github_emulator.history import push
from github_emulator.server import EmulatorServer
from models import Project, ProjectSync, RepositoryFile, SyncStatus, db
from sync_jobs.errors import GitHubUnavailableError
from sync_jobs.pipeline import execute_sync, run_pipeline
from sync_jobs.progress import Phase, read_events
from sync_jobs.redis_client import redis_connection
from tests.sync.conftest import Tracked, assert_matches_git, assert_single_chain, stored_state
from tests.sync.test_oracle import run

ROOT = Path(__file__).resolve().parents[2]


def test_a_lost_apply_race_recomputes_instead_of_forking(tracked: Tracked) -> None:
    run(tracked)
    tracked.history.commit_random_change()
    first_head = tracked.push()
    slow, fast = tracked.new_sync(), tracked.new_sync()
    pipeline = run_pipeline(slow)
    for event in pipeline:  # stop right before the slow sync's apply
        if event.phase is Phase.APPLY:
            break
    execute_sync(fast)  # wins the race to the same head
    tracked.history.commit_random_change()
    second_head = tracked.push()
    with pytest.raises(StopIteration) as finished:
        while True:
            next(pipeline)
    # The slow sync lost the compare-and-set, re-read the head and applied the newer one.
    assert finished.value.value is SyncStatus.SUCCEEDED
    chain = assert_single_chain(tracked.project_id)
    assert [s.head_commit_sha for s in chain[:2]] == [second_head, first_head]
    assert_matches_git(tracked, second_head)


def test_a_race_to_the_same_head_ends_superseded(tracked: Tracked) -> None:
    run(tracked)
    tracked.history.commit_random_change()
    head = tracked.push()
    slow, fast = tracked.new_sync(), tracked.new_sync()
    pipeline = run_pipeline(slow)
    for event in pipeline:
        if event.phase is Phase.APPLY:
            break
    execute_sync(fast)
    with pytest.raises(StopIteration) as finished:
        while True:
            next(pipeline)
    assert finished.value.value is SyncStatus.SUPERSEDED
    assert len(assert_single_chain(tracked.project_id)) == 2
    assert_matches_git(tracked, head)


def test_truncated_recursive_trees_are_walked(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    github_emulator.knobs.tree_max_entries = 30  # single levels stay whole
    for _ in range(3):
        tracked.history.commit_random_change()
    head = tracked.push()
    full = run(tracked, full=True)
    assert full.mode is not None and full.mode.startswith("full")
    assert_matches_git(tracked, head)
    counts = github_emulator.request_counts().by_endpoint
    assert any("recursive" in k or "trees" in k for k in counts)


def test_delta_syncs_fall_back_to_levels_where_recursive_subtrees_are_truncated(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    # The root and most subtrees list more than 30 entries recursively; single levels
    # of this repository stay under it.
    github_emulator.knobs.tree_max_entries = 30
    for _ in range(3):
        for _ in range(2):
            tracked.history.commit_random_change()
        head = tracked.push()
        before = tracked.requests()
        sync = run(tracked)
        assert sync.mode is not None and sync.mode.startswith("delta"), sync.mode
        assert sync.api_calls == tracked.requests() - before
        assert_matches_git(tracked, head)


def test_a_small_repository_delta_lists_its_tree_in_one_call(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    tracked.history.commit_random_change()
    head = tracked.push()
    trees_before = _tree_calls(github_emulator)
    sync = run(tracked)
    assert_matches_git(tracked, head)
    assert _tree_calls(github_emulator) - trees_before == 1, sync.api_calls


def _tree_calls(server: EmulatorServer) -> int:
    return sum(n for k, n in server.request_counts().by_endpoint.items() if "/git/trees/" in k)


def test_rate_limit_exhaustion_mid_sync_waits_for_the_reset(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    for _ in range(4):
        tracked.history.commit_random_change()
    head = tracked.push()
    github_emulator.rate_limiter.configure(limit=2, window=2)
    started = time.monotonic()
    sync = run(tracked)
    assert time.monotonic() - started >= 1
    assert_matches_git(tracked, head)
    assert sync.api_calls > 2


def test_secondary_rate_limits_are_waited_out(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    tracked.history.commit_random_change()
    head = tracked.push()
    github_emulator.rate_limiter.arm_secondary(count=2, retry_after=1)
    run(tracked)
    assert_matches_git(tracked, head)


def test_5xx_bursts_and_resets_are_retried(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    github_emulator.knobs.add_fault(r"/branches/", "502", count=2)
    github_emulator.knobs.add_fault(r"/git/trees/", "500", count=2)
    github_emulator.knobs.add_fault(r"/tarball/", "reset", count=1)
    run(tracked)
    assert_matches_git(tracked, tracked.history.head or "")
    for _ in range(3):
        tracked.history.commit_random_change()
    head = tracked.push()
    github_emulator.knobs.add_fault(r"/git/blobs/", "502", count=3)
    github_emulator.knobs.add_fault(r"/git/trees/", "reset", count=1)
    run(tracked)
    assert_matches_git(tracked, head)


def test_github_down_for_good_is_raised_for_the_job_layer_then_a_rerun_succeeds(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    """The engine says why it stopped (a retry event) and leaves the decision of when to
    run again to the job layer (tests/sync/test_job_retries.py)."""
    github_emulator.knobs.add_fault(r"/branches/", "500", count=50)
    sync_id = tracked.new_sync()
    with pytest.raises(GitHubUnavailableError):
        execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert not sync.status.is_final
    assert db.session.get_one(Project, tracked.project_id).current_sync_id is None
    events = read_events(redis_connection(), sync_id=sync_id)
    assert events[-1][1].phase == "retry" and "500" in events[-1][1].message
    github_emulator.knobs.clear_faults()
    execute_sync(sync_id)
    db.session.refresh(sync)
    assert sync.status is SyncStatus.SUCCEEDED
    assert_matches_git(tracked, tracked.history.head or "")


def test_empty_repository_fails_with_a_clear_message(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    from tests.sync.conftest import track

    empty = track(github_emulator, tmp_path / "e", name="empty", files=0)
    sync_id = empty.new_sync()
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.FAILED
    assert "empty" in (sync.error or "")
    events = read_events(redis_connection(), sync_id=sync_id)
    assert events[-1][1].final and events[-1][1].outcome == "failed"


def test_deleted_branch_fails_with_a_clear_message(tracked: Tracked) -> None:
    # The emulated remote refuses to delete its default branch (receive.denyDeleteCurrent),
    # as GitHub does; track a second branch and delete that one.
    subprocess.run(["git", "branch", "feature"], cwd=tracked.history.work_dir, check=True)
    push(tracked.history.work_dir, tracked.clone_url, branch="feature")
    db.session.get_one(Project, tracked.project_id).branch = "feature"
    db.session.commit()
    run(tracked)
    push(tracked.history.work_dir, tracked.clone_url, branch="feature", delete=True)
    sync_id = tracked.new_sync()
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.FAILED
    assert "does not exist" in (sync.error or "") and "feature" in (sync.error or "")


def test_progress_events_reach_the_stream(tracked: Tracked) -> None:
    sync = run(tracked)
    events = read_events(redis_connection(), sync_id=sync.id)
    phases = [e.phase for _id, e in events]
    assert phases[0] is Phase.RESOLVE and phases[-1] is Phase.DONE
    assert {Phase.DIFF, Phase.FETCH, Phase.APPLY} <= set(phases)
    final = events[-1][1]
    assert final.outcome == "succeeded" and final.final
    later = read_events(redis_connection(), sync_id=sync.id, after=events[-2][0])
    assert [e for _id, e in later] == [final]


# --- SIGKILL ---------------------------------------------------------------------------


def _settings_file(app: Flask, tmp_path: Path) -> Path:
    keys = (
        "DATABASE_URL",
        "REDIS_URL",
        "GITHUB_API_URL",
        "APP_ID",
        "PRIVATE_KEY",
        "SECRET_KEY",
        "SYNC_MAX_BLOB_BYTES",
        "SYNC_TRANSPORT",
    )
    settings: dict[str, Any] = {k: app.config[k] for k in keys}
    settings["TESTING"] = True
    settings["WEBHOOK_SECRETS"] = list(app.config["WEBHOOK_SECRETS"])
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    return path


def _start_worker(app: Flask, tmp_path: Path, sync_id: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.sync.sync_worker",
            str(_settings_file(app, tmp_path)),
            str(sync_id),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_phase(sync_id: int, phase: Phase, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(e.phase is phase for _id, e in read_events(redis_connection(), sync_id=sync_id)):
            return
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        time.sleep(0.05)
    raise AssertionError(f"sync {sync_id} never reached {phase}")


def _assert_untouched(
    tracked: Tracked, sync_id: int, state: dict[str, Any], current: int | None
) -> None:
    db.session.expire_all()
    assert db.session.get_one(Project, tracked.project_id).current_sync_id == current
    assert stored_state(tracked.project_id) == state
    assert (
        db.session.scalar(
            select(RepositoryFile.id).where(
                (RepositoryFile.valid_from_sync_id == sync_id)
                | (RepositoryFile.valid_to_sync_id == sync_id)
            )
        )
        is None
    )
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.sequence is None and sync.previous_sync_id is None


def test_sigkill_during_fetch_leaves_no_partial_state(
    tracked: Tracked, app: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    first = run(tracked)
    state = stored_state(tracked.project_id)
    for _ in range(8):
        tracked.history.commit_random_change()
    head = tracked.push()
    github_emulator.knobs.latency = 0.4
    sync_id = tracked.new_sync()
    worker = _start_worker(app, tmp_path, sync_id)
    try:
        _wait_for_phase(sync_id, Phase.FETCH, worker)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    github_emulator.knobs.latency = 0
    _assert_untouched(tracked, sync_id, state, first.id)
    execute_sync(sync_id)  # the retry
    db.session.expire_all()
    assert db.session.get_one(ProjectSync, sync_id).status is SyncStatus.SUCCEEDED
    assert_matches_git(tracked, head)
    assert_single_chain(tracked.project_id)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_sigkill_during_apply_leaves_no_partial_state(
    tracked: Tracked, app: Flask, tmp_path: Path
) -> None:
    first = run(tracked)
    state = stored_state(tracked.project_id)
    for _ in range(5):
        tracked.history.commit_random_change()
    head = tracked.push()
    sync_id = tracked.new_sync()
    # Hold the project row so the worker's apply transaction stops at its first write
    # (the compare-and-set), then kill it there: inside the transaction, before commit.
    blocker = create_engine(app.config["DATABASE_URL"])
    with blocker.connect() as conn:
        conn.execute(text("BEGIN"))
        conn.execute(
            text("SELECT id FROM project WHERE id = :p FOR UPDATE"), {"p": tracked.project_id}
        )
        worker = _start_worker(app, tmp_path, sync_id)
        try:
            _wait_for_phase(sync_id, Phase.APPLY, worker)
            time.sleep(0.5)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        conn.execute(text("ROLLBACK"))
    blocker.dispose()
    _assert_untouched(tracked, sync_id, state, first.id)
    execute_sync(sync_id)
    db.session.expire_all()
    assert db.session.get_one(ProjectSync, sync_id).status is SyncStatus.SUCCEEDED
    assert_matches_git(tracked, head)
    assert_single_chain(tracked.project_id)

"""A sync that one push alone asked for fetches that push's ``after`` at once: one git
request, no ``ls-refs``. Every case where the push might not be the branch's head (a
second push joining the queued sync, a delivery that comes late, a commit that is
gone) asks for the head as before, and the project never moves backwards.

The pushes are real (git push into the emulator, whose hook builds GitHub's push
payload); each payload goes through the push handler as the delivery job would hand it
over, and the sync runs as its RQ job does."""

from __future__ import annotations

import copy
import subprocess
import time
from typing import Any

import pytest

from github_emulator.server import EmulatorServer
from models import ProjectSync, SyncStatus, db
from sync_jobs.installations import push as handle_push
from sync_jobs.reconcile import reconcile_branches
from sync_jobs.sync_job import run_sync
from tests.sync.conftest import Tracked, assert_matches_git, assert_single_chain
from tests.sync.test_git_transport import git_requests, rest_calls, run


@pytest.fixture
def app_settings(app_settings: dict[str, Any]) -> dict[str, Any]:
    return {**app_settings, "SYNC_TRANSPORT": "git"}


def next_second() -> None:
    """Wait for the clock's next second: GitHub's push times have a second's resolution,
    and only a push later than every one before it is trusted with its ``after``."""
    time.sleep(1 - time.time() % 1 + 0.01)


def pushed(tracked: Tracked, *, force: bool = False) -> dict[str, Any]:
    """Commit, push (in a second of its own), and return the push payload GitHub (the
    emulator) sent for it."""
    tracked.history.commit_random_change()
    next_second()
    tracked.push(force=force)
    payload = tracked.server.deliveries[-1].payload
    assert payload["after"] == tracked.history.head, payload["after"]
    return copy.deepcopy(payload)


def delivered(payload: dict[str, Any], guid: str) -> int:
    """Hand a push to the handler as the delivery job does; the sync it queued."""
    outcome = handle_push(payload, delivery_id=guid)
    assert outcome.status == "processed", outcome
    sync = db.session.scalar(
        db.select(ProjectSync).filter_by(delivery_id=guid).order_by(ProjectSync.id.desc())
    )
    return sync.id if sync is not None else _queued_id()


def _queued_id() -> int:
    sync = db.session.scalar(db.select(ProjectSync).filter_by(status=SyncStatus.QUEUED))
    assert sync is not None
    return sync.id


def ran(sync_id: int) -> ProjectSync:
    said = run_sync(sync_id)
    db.session.expire_all()
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, (said, sync.error, sync.waiting_reason)
    return sync


def test_a_push_alone_is_one_git_request(tracked: Tracked, github_emulator: EmulatorServer) -> None:
    run(tracked)  # the first sync: ls-refs, then the fetch
    for n in range(3):
        payload = pushed(tracked)
        git_before, rest_before = git_requests(github_emulator), github_emulator.request_counts()
        sync = ran(delivered(payload, f"push-{n}"))
        assert git_requests(github_emulator) - git_before == 1  # the fetch, no ls-refs
        assert github_emulator.request_counts().total == rest_before.total
        assert sync.head_commit_sha == payload["after"]
        assert sync.mode is not None and sync.mode.startswith("delta+git"), sync.mode
        assert_matches_git(tracked, payload["after"])
    assert len(assert_single_chain(tracked.project_id)) == 4


def test_a_second_push_joining_the_queued_sync_makes_it_ask(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    first = pushed(tracked)
    queued = delivered(first, "first")
    second = pushed(tracked)
    first_row = db.session.get_one(ProjectSync, queued)
    assert first_row.pushed_after == first["after"]
    assert delivered(second, "second") == queued  # coalesced into the queued sync
    db.session.expire_all()
    assert db.session.get_one(ProjectSync, queued).pushed_after is None
    git_before = git_requests(github_emulator)
    sync = ran(queued)
    assert git_requests(github_emulator) - git_before == 2  # ls-refs named the newer head
    assert sync.head_commit_sha == second["after"]
    assert_matches_git(tracked, second["after"])


def test_a_late_delivery_never_moves_the_project_back(tracked: Tracked) -> None:
    """A push and a force push back to where it started; the second's delivery comes
    first. The late first push starts from the synced commit, but it is not newer than
    the one already heard of, so its sync reads the head: still the synced one."""
    start = run(tracked).head_commit_sha
    ahead = pushed(tracked)
    back = pushed_reset(tracked, start or "")
    assert (back["before"], back["after"]) == (ahead["after"], start)

    assert ran(delivered(back, "back")).head_commit_sha == start
    late = ran(delivered(ahead, "ahead"))
    assert late.head_commit_sha == start, "a late delivery moved the project backwards"
    assert_matches_git(tracked, start or "")


def pushed_reset(tracked: Tracked, commit: str) -> dict[str, Any]:
    """Move the branch back to ``commit`` and force-push it; its push payload."""
    tracked.history.reset_to(commit)
    tracked.push(force=True)
    payload = tracked.server.deliveries[-1].payload
    return copy.deepcopy(payload)


def test_a_pushed_commit_that_is_gone_is_not_fatal(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    """The push names a commit the server does not have (force-pushed away and
    collected): the fetch is refused, and the same sync asks for the head."""
    run(tracked)
    payload = pushed(tracked)
    head = payload["after"]
    payload["after"] = "1" * 40
    payload["repository"]["pushed_at"] += 1
    sync = ran(delivered(payload, "gone"))
    assert sync.head_commit_sha == head
    assert_matches_git(tracked, head)
    assert rest_calls(github_emulator, "branches") == 0  # git's ls-refs, not REST, asked


def test_a_forged_after_is_undone_by_the_next_reconcile(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    """A delivery signed with a leaked secret names a commit of another branch as the
    push's ``after``. The sync takes it (no read of the branch confirmed it), so the
    drift reconciler may not answer its next poll with a 304 for the head it read
    before: the poll reads the branch and brings the project back to its head."""
    run(tracked)
    assert reconcile_branches() == 0  # at its head: the reconciler keeps the ETag
    head = tracked.history.head or ""
    other = pushed_to_another_branch(tracked)
    payload = copy.deepcopy(tracked.server.deliveries[-1].payload)
    payload.update(ref="refs/heads/main", before=head, after=other)
    payload["repository"]["pushed_at"] += 1
    assert ran(delivered(payload, "forged")).head_commit_sha == other

    assert reconcile_branches() == 1
    db.session.expire_all()
    queued = db.session.scalar(
        db.select(ProjectSync).filter_by(status=SyncStatus.QUEUED).order_by(ProjectSync.id)
    )
    assert queued is not None
    assert ran(queued.id).head_commit_sha == head
    assert_matches_git(tracked, head)


def pushed_to_another_branch(tracked: Tracked) -> str:
    """Commit on a branch ``feature`` beside main and push it; the commit."""
    history = tracked.history
    main = history.head or ""
    history.commit_random_change()
    feature = history.head or ""
    subprocess.run(
        ["git", "push", "--quiet", tracked.clone_url, f"{feature}:refs/heads/feature"],
        cwd=history.work_dir,
        check=True,
    )
    history.reset_to(main)
    return feature

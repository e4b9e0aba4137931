"""The pipeline's phases in the order a person watching sees them, and the mode each
kind of sync records (one :class:`SyncMode` each, over both transports)."""

from __future__ import annotations

from flask import Flask

from github_emulator.server import EmulatorServer
from models import ProjectSync, SyncStatus, SyncTrigger, db
from models.enums import SyncMode
from sync_jobs.pipeline import execute_sync
from sync_jobs.progress import Phase, read_events
from sync_jobs.redis_client import redis_connection
from tests.api.test_live_fetch import commit_files
from tests.sync.conftest import Tracked


def run(tracked: Tracked, trigger: SyncTrigger = SyncTrigger.PUSH) -> ProjectSync:
    sync_id = tracked.new_sync(trigger)
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    return sync


def phases(sync_id: int) -> list[Phase]:
    """Each phase once, in the order its first event came."""
    seen: list[Phase] = []
    for _id, event in read_events(redis_connection(), sync_id=sync_id, count=10_000):
        if event.phase not in seen:
            seen.append(event.phase)
    return seen


def test_sync_modes_compose_from_the_walk_and_the_content_source() -> None:
    assert SyncMode.of(full=False, git=False, tarball=False, blobs=False) is SyncMode.DELTA
    assert SyncMode.of(full=False, git=False, tarball=False, blobs=True) is SyncMode.DELTA_BLOBS
    assert SyncMode.of(full=True, git=False, tarball=True, blobs=True) is SyncMode.FULL_TARBALL
    assert SyncMode.of(full=True, git=True, tarball=False, blobs=False) is SyncMode.FULL_GIT
    assert SyncMode.of(full=False, git=True, tarball=True, blobs=True) is SyncMode.DELTA_GIT_BLOBS
    composed = {
        SyncMode.of(full=full, git=git, tarball=tarball, blobs=blobs)
        for full in (False, True)
        for git in (False, True)
        for tarball in (False, True)
        for blobs in (False, True)
    }
    assert composed == set(SyncMode) - {SyncMode.NOOP, SyncMode.RESTORE}


def test_rest_syncs_run_their_phases_in_order_and_record_their_modes(
    app_context: Flask, tracked: Tracked
) -> None:
    app_context.config["SYNC_TRANSPORT"] = "rest"
    first = run(tracked, SyncTrigger.INSTALL)
    assert first.mode == SyncMode.FULL_TARBALL
    # The first sync's archive comes before its listing (its fetch before its diff).
    assert phases(first.id) == [Phase.RESOLVE, Phase.FETCH, Phase.DIFF, Phase.APPLY, Phase.DONE]

    commit_files(tracked, 3)
    delta = run(tracked)
    assert delta.mode == SyncMode.DELTA_BLOBS
    assert phases(delta.id) == [Phase.RESOLVE, Phase.DIFF, Phase.FETCH, Phase.APPLY, Phase.DONE]
    assert set(delta.phase_seconds or {}) >= {"resolve", "diff", "fetch", "apply"}

    noop = run(tracked)
    assert noop.mode == SyncMode.NOOP
    assert phases(noop.id) == [Phase.RESOLVE, Phase.DONE]

    full = db.session.get_one(ProjectSync, tracked.new_sync(SyncTrigger.MANUAL))
    execute_sync(full.id, full=True)
    db.session.refresh(full)
    # Every blob is stored: a full sync lists the tree and fetches nothing.
    assert full.status is SyncStatus.SUCCEEDED and full.mode == SyncMode.FULL_BLOBS, full.mode
    assert full.full_sync_reason == "a full sync was requested"


def test_git_syncs_record_their_modes(
    app_context: Flask, tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    app_context.config["SYNC_TRANSPORT"] = "git"
    assert run(tracked, SyncTrigger.INSTALL).mode == SyncMode.FULL_GIT
    commit_files(tracked, 3)
    delta = run(tracked)
    assert delta.mode == SyncMode.DELTA_GIT
    assert phases(delta.id)[0] is Phase.RESOLVE and phases(delta.id)[-1] is Phase.DONE

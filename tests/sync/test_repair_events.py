"""Syncs the repair pass ends or queues again tell open pages so, as a sync ending in its
own job does; and a sync that runs again carries its bar on from where it stood."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from flask import Flask

from github_emulator.server import EmulatorServer
from models import SyncStatus, SyncTrigger, db
from sync_jobs import defaults
from sync_jobs.changes import Change, ChangeKind, read_changes
from sync_jobs.errors import GitHubUnavailableError
from sync_jobs.keys import change_events_key
from sync_jobs.pipeline import execute_sync
from sync_jobs.progress import Phase, ProgressEvent, read_events
from sync_jobs.redis_client import redis_connection
from sync_jobs.repair import repair_syncs
from sync_jobs.scheduling import request_sync
from tests.api.test_live_fetch import commit_files
from tests.sync.conftest import Tracked
from tests.sync.test_repair import CONFIRM, lose_job, reload


def changes_of(project_id: int, sync_id: int) -> list[Change]:
    found = read_changes(redis_connection(), project_id=project_id, count=10_000)
    return [change for _id, change in found if change.data.get("sync_id") == sync_id]


def sync_events(sync_id: int) -> list[ProgressEvent]:
    return [event for _id, event in read_events(redis_connection(), sync_id=sync_id, count=10_000)]


def assert_ended_on_the_page(project_id: int, sync_id: int, outcome: SyncStatus) -> None:
    """The page's stream has the final change, the sync's own stream its final event."""
    finals = [c for c in changes_of(project_id, sync_id) if c.kind is ChangeKind.FINAL]
    assert [c.data["outcome"] for c in finals] == [outcome], changes_of(project_id, sync_id)
    assert finals[0].data["percent"] == 100.0 and finals[0].data["message"]
    last = sync_events(sync_id)[-1]
    assert last.final and last.outcome == outcome, last


def test_superseded_and_requeued_syncs_reach_the_page(app_context: Flask, tracked: Tracked) -> None:
    older = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(older, running=True)
    newer = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    assert newer != older
    lose_job(newer, running=False)

    report = repair_syncs(redis_connection(), confirm_seconds=CONFIRM)

    assert (report.superseded, report.requeued) == (1, 1), report
    assert reload(older).status is SyncStatus.SUPERSEDED
    assert_ended_on_the_page(tracked.project_id, older, SyncStatus.SUPERSEDED)
    requeued = [c for c in changes_of(tracked.project_id, newer) if c.kind is ChangeKind.SYNC]
    assert requeued[-1].data["status"] == SyncStatus.QUEUED, requeued
    assert requeued[-1].data["waiting_reason"] == "its queued job was lost; queued again"


def test_a_sync_failed_by_the_repair_pass_reaches_the_page(
    app_context: Flask, tracked: Tracked
) -> None:
    sync_id = request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id
    lose_job(sync_id, running=True)
    sync = reload(sync_id)
    sync.attempts = defaults.SYNC_MAX_UNEXPECTED_FAILURES
    db.session.commit()

    assert repair_syncs(redis_connection(), confirm_seconds=CONFIRM).failed == 1

    assert reload(sync_id).status is SyncStatus.FAILED
    assert_ended_on_the_page(tracked.project_id, sync_id, SyncStatus.FAILED)
    final = sync_events(sync_id)[-1]
    assert "its worker stopped during each of" in final.message


def test_a_sync_run_again_carries_its_bar_on(
    app_context: Flask, tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    """The first run stops in its fetch phase (blob calls failing for good); the second
    run's bar starts where the first one's stood, not at 0."""
    app_context.config["SYNC_TRANSPORT"] = "rest"
    execute_sync(tracked.new_sync(SyncTrigger.INSTALL))
    commit_files(tracked, 5)  # few enough for blob calls
    sync_id = tracked.new_sync()
    github_emulator.knobs.add_fault(r"/git/blobs/", "500", count=500)
    try:
        with pytest.raises(GitHubUnavailableError):
            execute_sync(sync_id)
    finally:
        github_emulator.knobs.clear_faults()
    first = sync_events(sync_id)
    assert first[-1].phase is Phase.RETRY, first[-1]
    reached = max(event.percent or 0.0 for event in first)
    assert reached > 10, [(e.phase, e.percent) for e in first]  # past its diff

    execute_sync(sync_id)

    assert reload(sync_id).status is SyncStatus.SUCCEEDED
    again = sync_events(sync_id)[len(first) :]
    percents = [event.percent if event.percent is not None else -1.0 for event in again]
    assert again[0].phase is Phase.RESOLVE and percents[0] == reached, again[0]
    assert percents == sorted(percents) and percents[-1] == 100.0, percents
    pages = [
        c.data["percent"]
        for c in changes_of(tracked.project_id, sync_id)
        if c.kind in (ChangeKind.PROGRESS, ChangeKind.FINAL)
    ]
    assert pages == sorted(pages), pages


def commands_while(action: Callable[[], object]) -> list[str]:
    """The commands Redis ran while ``action`` did, in order (through MONITOR on a
    connection of its own)."""
    seen: list[str] = []
    with redis_connection().monitor() as monitor:
        done = threading.Event()

        def record() -> None:
            for command in monitor.listen():
                seen.append(command["command"])
                if done.is_set() and "monitor-stop" in command["command"]:
                    return

        reader = threading.Thread(target=record, daemon=True)
        reader.start()
        time.sleep(0.2)  # MONITOR is on before the action runs
        action()
        done.set()
        redis_connection().get("monitor-stop")
        reader.join(timeout=10)
    return seen


def announced_before_enqueued(commands: list[str], project_id: int, job_id: str) -> None:
    change_key = change_events_key(project_id)
    announced = next(i for i, c in enumerate(commands) if c.startswith("XADD") and change_key in c)
    enqueued = next(i for i, c in enumerate(commands) if f"job:{job_id}" in c)
    assert announced < enqueued, commands[min(announced, enqueued) : max(announced, enqueued) + 1]


def test_a_page_hears_of_a_sync_before_a_worker_can_run_it(
    app_context: Flask, tracked: Tracked
) -> None:
    """A worker may take a job the moment it exists and publish its progress: the
    ``sync`` change must already be in the stream, or an open page sees the progress
    (even the end) of a sync it was never told of."""
    queued: list[int] = []
    commands = commands_while(
        lambda: queued.append(request_sync(tracked.project_id, trigger=SyncTrigger.PUSH).id)
    )
    announced_before_enqueued(commands, tracked.project_id, reload(queued[0]).rq_job_id or "")

    lose_job(queued[0], running=False)
    commands = commands_while(lambda: repair_syncs(redis_connection(), confirm_seconds=CONFIRM))
    announced_before_enqueued(commands, tracked.project_id, reload(queued[0]).rq_job_id or "")

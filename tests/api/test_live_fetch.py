"""Fetch progress is published while the content arrives, not after the download: by
blob calls (the emulator's latency knob makes each call take as long as GitHub's) and
by a large tarball, the REST transports (``SYNC_TRANSPORT=rest``; the git transport's
pack is its own module's). Redis stamps each event's stream id with the time it was
appended."""

from __future__ import annotations

import subprocess
from itertools import pairwise
from pathlib import Path

from flask import Flask

from github_emulator.history import push
from github_emulator.server import EmulatorServer
from models import ProjectSync, SyncTrigger, db
from sync_jobs.pipeline import execute_sync
from sync_jobs.progress import Phase, ProgressEvent, read_events
from sync_jobs.redis_client import redis_connection
from tests.sync.conftest import Tracked, track

LATENCY_SECONDS = 0.25
"""Each emulated API call's wait: ~2.5 times GitHub's, so three rounds of blob calls take
long enough to see progress between them."""


def stream_millis(event_id: str) -> int:
    """When Redis appended an event: the first part of its stream id, in ms."""
    return int(event_id.split("-")[0])


def fetch_events(sync_id: int) -> list[tuple[int, ProgressEvent]]:
    events = read_events(redis_connection(), sync_id=sync_id, count=10_000)
    return [(stream_millis(i), e) for i, e in events if e.phase is Phase.FETCH]


def commit_files(tracked: Tracked, count: int, *, size: int = 200) -> None:
    """Add ``count`` new text files in one commit and push it."""
    work = tracked.history.work_dir
    folder = work / "added"
    folder.mkdir(exist_ok=True)
    for n in range(count):
        (folder / f"file-{n:05d}.txt").write_text(f"line {n}\n" * (size // 8))
    subprocess.run(["git", "-C", str(work), "add", "added"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", f"add {count}"], check=True)
    push(work, tracked.clone_url)


def assert_progress_before_the_end(fetch: list[tuple[int, ProgressEvent]], total: int) -> None:
    end, last = fetch[-1]
    assert last.done == total and last.bytes > 0, last
    during = [(at, e) for at, e in fetch if 0 < e.done < total]
    assert during, f"no progress before the fetch ended: {[e for _, e in fetch]}"
    # Told while most of the files were still to come, whatever the machine's speed
    # (a time margin before the end measured the machine, not the code).
    first = during[0][1]
    assert first.done <= total * 0.8, f"the first progress came as the fetch ended: {first}"
    assert end > during[0][0], "the first progress came only with the end"
    assert [e.done for _, e in fetch] == sorted(e.done for _, e in fetch)
    assert "files" in during[0][1].message and "B" in during[0][1].message, during[0][1]
    gaps = [b - a for (a, _), (b, _) in pairwise(during)]
    assert all(gap >= 200 for gap in gaps), gaps  # throttled: at most ~4 a second


def test_blob_call_progress_arrives_between_the_calls(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    app_context.config["SYNC_TRANSPORT"] = "rest"
    tracked = track(github_emulator, tmp_path / "work", files=30, directories=4)
    execute_sync(tracked.new_sync(SyncTrigger.INSTALL))
    commit_files(tracked, 22)  # few enough that blob calls beat a tarball
    github_emulator.knobs.latency = LATENCY_SECONDS
    try:
        sync_id = tracked.new_sync()
        execute_sync(sync_id)
    finally:
        github_emulator.knobs.latency = 0.0
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.mode == "delta+blobs", sync.mode
    assert_progress_before_the_end(fetch_events(sync_id), 22)


def test_tarball_progress_arrives_while_the_archive_is_read(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    app_context.config["SYNC_TRANSPORT"] = "rest"
    tracked = track(github_emulator, tmp_path / "work", files=0)
    (tracked.history.work_dir / "README").write_text("large\n")
    commit_files(tracked, 15_000, size=400)
    sync_id = tracked.new_sync(SyncTrigger.INSTALL)
    execute_sync(sync_id)
    fetch = fetch_events(sync_id)
    assert_progress_before_the_end(fetch, fetch[-1][1].done)
    assert fetch[-1][1].done >= 15_000

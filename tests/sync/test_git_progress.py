"""A git pack's download is published while it runs, not only before and after it:
bytes as they arrive, then objects as they are unpacked, throttled like every fetch.
Real git http-backend behind the emulator, with GitHub's latency; Redis stamps each
event's stream id with the time it was appended."""

from __future__ import annotations

import os
import re
import subprocess
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from github_emulator.history import push
from github_emulator.server import EmulatorServer
from models import ProjectSync, SyncStatus, SyncTrigger, db
from sync_jobs.pipeline import execute_sync
from sync_jobs.progress import Phase, ProgressEvent, read_events
from sync_jobs.redis_client import redis_connection
from tests.sync.conftest import Tracked, track

LATENCY_SECONDS = 0.1
"""GitHub's own answer time, before each of the fetch's two requests."""

FILES = 1500
FILE_BYTES = 24 * 1024
"""Incompressible text (hex of random bytes), ~36 MiB in all and about half that as a
pack: long enough to arrive and unpack over several progress intervals."""

RECEIVING = re.compile(r"^receiving [\d.]+ (B|KiB|MiB|GiB) of objects$")
UNPACKING = re.compile(r"^unpacking ([\d,]+) of ([\d,]+) objects$")


@pytest.fixture
def app_settings(app_settings: dict[str, Any]) -> dict[str, Any]:
    # "git": a failure of the git path fails the test instead of falling back silently.
    return {**app_settings, "SYNC_TRANSPORT": "git"}


def stream_millis(event_id: str) -> int:
    return int(event_id.split("-")[0])


def commit_random_files(tracked: Tracked) -> None:
    work = tracked.history.work_dir
    folder = work / "data"
    folder.mkdir(exist_ok=True)
    for n in range(FILES):
        (folder / f"chunk-{n:05d}.txt").write_text(os.urandom(FILE_BYTES // 2).hex())
    subprocess.run(["git", "-C", str(work), "add", "data"], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "data"], check=True)
    push(work, tracked.clone_url)


def unpacked(event: ProgressEvent) -> tuple[int, int]:
    match = UNPACKING.match(event.message)
    assert match is not None, event.message
    return int(match[1].replace(",", "")), int(match[2].replace(",", ""))


def test_pack_progress_arrives_while_the_pack_downloads(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    tracked = track(github_emulator, tmp_path / "work", files=0)
    (tracked.history.work_dir / "README").write_text("random data\n")
    commit_random_files(tracked)
    github_emulator.knobs.latency = LATENCY_SECONDS
    try:
        sync_id = tracked.new_sync(SyncTrigger.INSTALL)
        execute_sync(sync_id)
    finally:
        github_emulator.knobs.latency = 0.0
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    assert sync.mode == "full+git", sync.mode

    events = [
        (stream_millis(i), e)
        for i, e in read_events(redis_connection(), sync_id=sync_id, count=10_000)
    ]
    end, final = events[-1]
    assert final.final and final.percent == 100.0, final
    receiving = [(at, e) for at, e in events if e.message.startswith("receiving")]
    unpacking = [(at, e) for at, e in events if e.message.startswith("unpacking")]
    assert all(RECEIVING.match(e.message) for _, e in receiving), receiving

    # Bytes were published while the pack still arrived, well before the sync ended
    # (every unpacking event carries the whole pack's size).
    pack_bytes = unpacking[-1][1].bytes
    assert pack_bytes > FILES * FILE_BYTES // 4, pack_bytes
    early = [(at, e) for at, e in receiving if 0 < e.bytes < pack_bytes]
    assert early, [e.message for _, e in receiving]
    assert end - early[0][0] >= 500, (early[0], end)
    assert [e.bytes for _, e in receiving] == sorted(e.bytes for _, e in receiving)

    # Then the objects as they were unpacked: some of them, then all.
    counts = [unpacked(e) for _, e in unpacking]
    objects = counts[-1][1]
    assert counts[-1] == (objects, objects) and objects > FILES, counts
    during = [at for (at, _), (done, _) in zip(unpacking, counts, strict=True) if done < objects]
    assert during and end - during[0] >= 200, (counts, end)
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    assert receiving[-1][0] <= unpacking[0][0]

    # Throttled like every fetch, and one bar that never goes back.
    gaps = [b - a for (a, _), (b, _) in pairwise([*early, *unpacking[:-1]])]
    assert all(gap >= 200 for gap in gaps), gaps
    percents = [e.percent for _, e in events if e.percent is not None]
    assert len(percents) == len(events) and percents == sorted(percents), percents
    fetch = [e.percent for _, e in events if e.phase is Phase.FETCH and e.percent is not None]
    assert fetch[-1] > fetch[0], fetch  # the bar moved during the pack

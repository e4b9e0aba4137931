"""Live progress of a real sync through real gunicorn and a real RQ worker."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from github_emulator.history import push
from tests.e2e.conftest import Stack, install_and_first_sync, stack

__all__ = ["stack"]


def test_events_of_a_manual_resync_until_final(stack: Stack, tmp_path: Path) -> None:
    record, history, pid = install_and_first_sync(
        stack, tmp_path / "work", "live", files=40, directories=5, seed=5
    )
    github = stack.github
    history.commit_random_change()
    push(history.work_dir, github.clone_url(record))
    request = urllib.request.Request(
        f"{stack.url}/api/v1/projects/{pid}/syncs",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202
        events_url = json.load(answer)["events_url"]
    kinds = []
    final = None
    with urllib.request.urlopen(events_url, timeout=60) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        for raw in stream:  # ends when the server closes the stream after the final event
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kinds.append(line[len("event: ") :])
            elif line.startswith("data: ") and kinds and kinds[-1] == "final":
                final = json.loads(line[len("data: ") :])
    assert kinds[-1] == "final" and kinds.count("final") == 1
    assert final is not None and final["outcome"] in ("succeeded", "superseded")

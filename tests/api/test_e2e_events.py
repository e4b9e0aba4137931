"""Live progress of a real sync through real gunicorn and a real RQ worker."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from sqlalchemy import select

from github_emulator.history import HistoryGenerator, push
from models import Project, Repository, db
from tests.e2e.conftest import Stack, query, stack, wait_for

__all__ = ["stack"]


def test_events_of_a_manual_resync_until_final(stack: Stack, tmp_path: Path) -> None:
    github = stack.github
    record = github.create_repository("octo", "live")
    history = HistoryGenerator(tmp_path / "work", seed=5)
    history.initial_commit(files=40, directories=5)
    push(history.work_dir, github.clone_url(record))
    github.install("octo", [record])

    def project_id() -> int | None:
        return db.session.scalar(
            select(Project.id).join(Repository).where(Repository.github_id == record.id)
        )

    pid = wait_for(lambda: query(stack, project_id), "the installation to create a project")
    wait_for(
        lambda: query(stack, lambda: db.session.get_one(Project, pid).current_sync_id),
        "the first sync",
    )
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

"""An open page picks up a push: the status page's and the project page's streams,
served by real gunicorn, carry the sync a real webhook queued, its progress from a real
RQ worker, and its end, as they happen."""

from __future__ import annotations

import html
import json
import queue
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from github_emulator.history import HistoryGenerator, push
from tests.e2e.conftest import Stack, install_and_first_sync, stack

__all__ = ["stack"]

Message = tuple[str, dict[str, Any]]


def follow(url: str, into: queue.Queue[Message | None], opened: list[Any]) -> threading.Thread:
    """Read a stream in a thread, one (event, data) per message; None when it ends. The
    response goes into ``opened`` so the test can close it (the server then frees the
    stream's thread at its next write, before gunicorn is stopped)."""

    def read() -> None:
        kind = None
        try:
            with urllib.request.urlopen(url, timeout=60) as stream:
                opened.append(stream)
                into.put(("open", {}))
                for raw in stream:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: ") and kind:
                        into.put((kind, json.loads(line[len("data: ") :])))
                        kind = None
        except (OSError, ValueError, AttributeError):
            pass  # closed by the test
        finally:
            into.put(None)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def events_url(stack: Stack, path: str) -> str:
    """The stream a page follows, as the page names it (from the state it rendered)."""
    with urllib.request.urlopen(f"{stack.url}{path}", timeout=10) as page:
        found = re.search(r'data-events-url="([^"]+)"', page.read().decode())
    assert found, f"{path} names no event stream"
    return stack.url + html.unescape(found.group(1))


def until_final(messages: queue.Queue[Message | None], project_id: int) -> list[Message]:
    got: list[Message] = []
    while True:
        item = messages.get(timeout=60)
        assert item is not None, f"the stream ended before the sync did: {got}"
        got.append(item)
        kind, data = item
        if kind == "final" and data.get("project_id") == project_id:
            return got


# PostgreSQL, as deployed; the browser tests follow a push live on SQLite.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_an_open_page_shows_a_push_without_reload(stack: Stack, tmp_path: Path) -> None:
    record, history, pid = install_and_first_sync(
        stack, tmp_path / "work", "watched", files=60, directories=6, seed=11
    )
    streams = {
        "status": queue.Queue[Message | None](),
        "project": queue.Queue[Message | None](),
    }
    opened: list[Any] = []
    follow(events_url(stack, "/"), streams["status"], opened)
    follow(events_url(stack, f"/projects/{pid}"), streams["project"], opened)
    try:
        for messages in streams.values():
            assert messages.get(timeout=10) == ("open", {})
        pushed_and_followed(history, stack, record, streams, pid)
    finally:
        for stream in opened:
            stream.close()


def pushed_and_followed(
    history: HistoryGenerator,
    stack: Stack,
    record: Any,
    streams: dict[str, queue.Queue[Message | None]],
    pid: int,
) -> None:
    github = stack.github

    history.commit_random_change()
    push(history.work_dir, github.clone_url(record))  # the emulator sends the webhook

    for page, messages in streams.items():
        got = [(k, d) for k, d in until_final(messages, pid) if d.get("project_id") == pid]
        kinds = [kind for kind, _ in got]
        assert kinds[0] == "sync", (page, kinds)
        assert got[0][1]["status"] == "queued" and got[0][1]["trigger"] == "push"
        sync_id = got[0][1]["sync_id"]
        assert {d["sync_id"] for _, d in got} == {sync_id}, page
        progress = [d for kind, d in got if kind == "progress"]
        assert progress and {d["status"] for d in progress} == {"running"}, page
        final = got[-1][1]
        assert final["outcome"] == "succeeded" and final["percent"] == 100.0, (page, final)
        percents = [d["percent"] for d in progress] + [final["percent"]]
        assert percents == sorted(percents), (page, percents)

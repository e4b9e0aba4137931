"""Syncs over git's smart HTTP against the emulator (real git http-backend, real HTTP):
every state checked against git itself, and every failure of the git path ending in
the REST path within the same sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from github_emulator.history import REGULAR
from github_emulator.server import EmulatorServer
from models import ProjectSync, SyncStatus, db
from sync_jobs import metrics
from sync_jobs.git_http import repository_git_url
from sync_jobs.pipeline import execute_sync
from sync_jobs.redis_client import redis_connection
from tests.sync import test_oracle
from tests.sync.conftest import Tracked, assert_matches_git, assert_single_chain
from tests.sync.test_oracle import replay


@pytest.fixture
def app_settings(app_settings: dict[str, Any]) -> dict[str, Any]:
    # "git": a failure of the git path fails the test instead of falling back silently.
    return {**app_settings, "SYNC_TRANSPORT": "git"}


def run(tracked: Tracked) -> ProjectSync:
    sync_id = tracked.new_sync()
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    return sync


def git_requests(server: EmulatorServer) -> int:
    return server.request_counts().git_requests


def rest_calls(server: EmulatorServer, fragment: str) -> int:
    counts = server.request_counts().by_endpoint
    return sum(n for endpoint, n in counts.items() if fragment in endpoint)


def test_git_url_follows_the_api_root() -> None:
    assert repository_git_url("https://api.github.com", "o/r") == "https://github.com/o/r.git"
    assert repository_git_url("https://ghe.example/api/v3", "o/r") == "https://ghe.example/o/r.git"
    assert repository_git_url("http://127.0.0.1:81", "o/r") == "http://127.0.0.1:81/o/r.git"


def test_first_sync_and_pushes_over_git_match_git(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    first = run(tracked)
    assert first.mode == "full+git", first.mode
    assert git_requests(github_emulator) == 2  # ls-refs, fetch
    assert rest_calls(github_emulator, "tarball") == 0
    assert rest_calls(github_emulator, "git/blobs") == 0
    assert_matches_git(tracked, tracked.history.head or "")
    # Ordinary pushes and force pushes (every fifth), each one pack.
    done = replay(tracked, 10)
    assert all(sync.mode and sync.mode.startswith("delta+git") for sync, _ in done[1:])
    assert_single_chain(tracked.project_id)


def test_revert_to_a_tree_never_synced(tracked: Tracked) -> None:
    """c0 has file F in directory D; c1 changes F (synced: the first sync, one commit
    deep, stores c1's trees only); c2 puts F back. c0's D is reachable from the ``have``
    (c1); upload-pack sends it again (it leaves out only what the ``have``'s own tree
    reaches), and wherever it comes from the state is git's."""
    history = tracked.history
    path = next(
        p for p, (mode, _c) in sorted(history.files.items()) if "/" in p and mode == "100644"
    )
    original = history.files[path]
    history._commit("change", {path: (REGULAR, original[1] + b"changed\n")}, parent=history.head)
    tracked.push()
    run(tracked)
    history._commit("revert", {path: original}, parent=history.head)
    head = tracked.push()
    sync = run(tracked)
    assert sync.mode is not None and sync.mode.startswith("delta+git"), sync.mode
    assert sync.files_modified == 1
    assert_matches_git(tracked, head)


def test_moved_directory_and_rename(tracked: Tracked) -> None:
    history = tracked.history
    directory = sorted({p.rsplit("/", 1)[0] for p in history.files if "/" in p})[0]
    moved = {p: e for p, e in history.files.items() if p.startswith(directory + "/")}
    changes: dict[str, tuple[str, bytes] | None] = {p: None for p in moved}
    changes.update({f"moved/{p}": e for p, e in moved.items()})
    history._commit("move a directory", changes, parent=history.head)
    run_first = tracked.push()
    assert run_first
    run(tracked)  # the first sync (full over git)
    history._commit(
        "move it back", {**{f"moved/{p}": None for p in moved}, **moved}, parent=history.head
    )
    head = tracked.push()
    sync = run(tracked)
    assert sync.mode is not None and sync.mode.startswith("delta+git"), sync.mode
    assert_matches_git(tracked, head)


def test_large_file_is_filtered_out_of_the_pack(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    big = b"".join(b"line %d of a large text file\n" % n for n in range(20_000))  # ~580 KB
    history = tracked.history
    history._commit("big file", {"data/big.txt": (REGULAR, big)}, parent=history.head)
    head = tracked.push()
    sent_before = github_emulator.request_counts().git_bytes_sent
    blobs_before = rest_calls(github_emulator, "git/blobs")
    sync = run(tracked)
    assert github_emulator.request_counts().git_bytes_sent - sent_before < 20_000
    # Its size came from the REST tree listing; its content was never downloaded.
    assert rest_calls(github_emulator, "git/blobs") == blobs_before
    assert sync.mode == "delta+git+blobs", sync.mode
    assert_matches_git(tracked, head)


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_git_failure_falls_back_to_rest_in_the_same_sync(
    tracked: Tracked, github_emulator: EmulatorServer, app: Any, fault: str
) -> None:
    app.config["SYNC_TRANSPORT"] = "auto"
    run(tracked)
    tracked.history.commit_random_change()
    head = tracked.push()
    github_emulator.knobs.add_fault(r"/git-upload-pack$", fault)
    sync = run(tracked)
    assert sync.mode is not None and sync.mode.startswith("delta") and "git" not in sync.mode
    assert_matches_git(tracked, head)
    counted = redis_connection().hgetall(metrics.GIT_FALLBACKS.key)
    assert counted == {b'["GitTransportError"]': b"1"}


def test_revoked_token_is_renewed_and_git_carries_the_new_one(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    tracked.history.commit_random_change()
    head = tracked.push()
    # The cached installation token is revoked: the branch read is refused (401), the
    # connector mints a new token, and the fetch over git sends that one.
    with github_emulator.state.lock:
        for text, token in list(github_emulator.state.tokens.items()):
            if token.installation_id is not None:
                del github_emulator.state.tokens[text]
    sync = run(tracked)
    assert sync.mode is not None and sync.mode.startswith("delta+git"), sync.mode
    assert_matches_git(tracked, head)


@pytest.mark.parametrize("transport", ["auto", "git"])
def test_oracle_over_git(
    tracked: Tracked, github_emulator: EmulatorServer, app: Any, tmp_path: Path, transport: str
) -> None:
    """tests/sync/test_oracle.py's whole history check (pushes, force pushes, a fresh
    project's full sync, restores) over the git transport."""
    app.config["SYNC_TRANSPORT"] = transport
    test_oracle.test_replayed_history_matches_git_after_every_push(
        tracked, github_emulator, tmp_path
    )


def test_rest_transport_never_speaks_git(
    tracked: Tracked, github_emulator: EmulatorServer, app: Any
) -> None:
    app.config["SYNC_TRANSPORT"] = "rest"
    run(tracked)
    tracked.history.commit_random_change()
    head = tracked.push()
    sync = run(tracked)
    assert git_requests(github_emulator) == 0
    assert sync.mode is not None and "git" not in sync.mode
    assert_matches_git(tracked, head)


def test_noop_over_git_is_one_ls_refs_and_no_rest_call(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    run(tracked)
    tracked.history.commit_random_change()
    tracked.push()
    rest_before, git_before = github_emulator.request_counts().total, git_requests(github_emulator)
    pushed = run(tracked)
    # ls-refs names the head and the pack's commit its tree: no REST branch read.
    assert git_requests(github_emulator) - git_before == 2
    assert rest_calls(github_emulator, "branches") == 0
    assert pushed.mode is not None and pushed.mode.startswith("delta+git")
    rest_before, git_before = github_emulator.request_counts().total, git_requests(github_emulator)
    noop = run(tracked)
    assert noop.mode == "noop"
    assert git_requests(github_emulator) - git_before == 1
    assert github_emulator.request_counts().total == rest_before
    assert len(assert_single_chain(tracked.project_id)) == 2


def test_a_branch_reset_to_a_synced_commit_syncs_over_git_alone(
    tracked: Tracked, github_emulator: EmulatorServer
) -> None:
    """Reset to a commit the project synced before: the ``have`` reaches it, so git
    sends no pack; its trees are stored, so nothing is read over REST either."""
    first = run(tracked)
    tracked.history.commit_random_change()
    tracked.push()
    assert run(tracked).head_commit_sha == tracked.history.head
    start = first.head_commit_sha or ""
    tracked.history.reset_to(start)
    tracked.push(force=True)
    rest_before = github_emulator.request_counts().total
    back = run(tracked)
    assert back.head_commit_sha == start
    assert github_emulator.request_counts().total == rest_before  # no REST call at all
    assert_matches_git(tracked, start)
    assert len(assert_single_chain(tracked.project_id)) == 3

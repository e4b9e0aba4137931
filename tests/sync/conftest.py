"""Fixtures of the sync engine suite: the emulator over real HTTP, a tracked project,
and the oracle that compares stored state with git itself."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from github_emulator.history import HistoryGenerator, push
from github_emulator.server import EmulatorServer
from models import (
    Blob,
    Installation,
    Project,
    ProjectSync,
    Repository,
    SyncStatus,
    SyncTrigger,
    db,
)
from models.queries import file_rows_at, lineage, memory_entries
from sync_jobs.core.content import decode_text
from tests.conftest import base_settings


@pytest.fixture
def app_settings(
    database_url: str, redis_url: str, tmp_path: Path, github_emulator: EmulatorServer
) -> dict[str, Any]:
    settings = base_settings(database_url, redis_url, str(tmp_path))
    settings.update(
        GITHUB_API_URL=github_emulator.url,
        APP_ID=github_emulator.app_id,
        PRIVATE_KEY=github_emulator.private_key_pem,
        SYNC_MAX_BLOB_BYTES=64 * 1024,
        # The emulator's "reset" fault hangs instead of resetting; don't wait 30 s for it.
        SYNC_HTTP_TIMEOUT_SECONDS=2.0,
    )
    return settings


def git_lines(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], capture_output=True, check=True
    ).stdout


def git_tree(git_dir: Path, commit: str) -> dict[str, tuple[str, str]]:
    """``git ls-tree -r``: path -> (mode, sha), the oracle's file state."""
    out = git_lines(git_dir, "ls-tree", "-r", "-z", "--full-tree", commit)
    state = {}
    for line in filter(None, out.decode("utf-8", "surrogateescape").split("\0")):
        meta, path = line.split("\t", 1)
        mode, _type, sha = meta.split()
        state[path] = (mode, sha)
    return state


def git_blob(git_dir: Path, sha: str) -> bytes:
    return git_lines(git_dir, "cat-file", "-p", sha)


@dataclass
class Tracked:
    """An emulated repository with a history generator, tracked by a Project row."""

    server: EmulatorServer
    history: HistoryGenerator
    git_dir: Path
    clone_url: str
    project_id: int
    repository_id: int

    def push(self, *, force: bool = False) -> str:
        push(self.history.work_dir, self.clone_url, force=force)
        assert self.history.head is not None
        return self.history.head

    def new_sync(self, trigger: SyncTrigger = SyncTrigger.PUSH) -> int:
        sync = ProjectSync(project_id=self.project_id, trigger=trigger)
        db.session.add(sync)
        db.session.commit()
        return sync.id

    def requests(self) -> int:
        return self.server.request_counts().total


def track(
    server: EmulatorServer,
    work_dir: Path,
    *,
    name: str = "repo",
    seed: int = 7,
    files: int = 60,
    directories: int = 12,
) -> Tracked:
    record = server.create_repository("octo", name)
    installation_id = server.install("octo", [record])
    history = HistoryGenerator(work_dir, seed)
    if files:
        history.initial_commit(files=files, directories=directories)
    installation = db.session.scalar(
        select(Installation).where(Installation.github_id == installation_id)
    ) or Installation(github_id=installation_id, account_login="octo")
    repository = Repository(
        github_id=record.id,
        installation=installation,
        full_name=f"octo/{name}",
        default_branch="main",
    )
    project = Project(repository=repository, branch="main")
    db.session.add_all([installation, repository, project])
    db.session.commit()
    tracked = Tracked(
        server,
        history,
        server.git(record).path,
        server.clone_url(record),
        project.id,
        repository.id,
    )
    if files:
        tracked.push()
    return tracked


@pytest.fixture
def tracked(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> Iterator[Tracked]:
    yield track(github_emulator, tmp_path / "work")


def stored_state(project_id: int, sync: ProjectSync | None = None) -> dict[str, tuple[str, str]]:
    return {
        path: (mode, sha)
        for _id, path, mode, sha, _size in db.session.execute(file_rows_at(project_id, sync=sync))
    }


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def git_binary_paths(git_dir: Path, commit: str) -> set[str]:
    """The paths ``git diff --numstat`` shows as binary (``-``) when the commit is
    diffed against the empty tree: git's own verdict, whatever rule it uses."""
    out = git_lines(git_dir, "diff", "--numstat", "-z", "--no-renames", EMPTY_TREE, commit)
    binary = set()
    for record in filter(None, out.decode("utf-8", "surrogateescape").split("\0")):
        added, _deleted, path = record.split("\t", 2)
        if added == "-":
            binary.add(path)
    return binary


def assert_matches_git(tracked: Tracked, commit: str, sync: ProjectSync | None = None) -> None:
    """The oracle: files equal ``git ls-tree -r``; a blob is binary exactly when ``git
    diff --numstat`` says so; every other blob's bytes read back from the database are
    ``git cat-file -p`` (``content_bytes`` when set, else ``content`` in UTF-8), with
    its characters and codec; the active memory is exactly the text regular files."""
    expected = git_tree(tracked.git_dir, commit)
    assert stored_state(tracked.project_id, sync) == expected
    binary = git_binary_paths(tracked.git_dir, commit)
    blobs = {
        b.sha: b
        for b in db.session.scalars(select(Blob).where(Blob.repository_id == tracked.repository_id))
    }
    max_bytes = 64 * 1024
    expected_memory = {}
    for path, (mode, sha) in expected.items():
        if mode == "160000":
            continue
        blob = blobs[sha]
        content = git_blob(tracked.git_dir, sha)
        assert blob.size == len(content), path
        if len(content) > max_bytes or path in binary:
            assert blob.content is None and blob.is_binary == (path in binary), path
            continue
        assert not blob.is_binary, path
        # Every text blob comes back from the database byte for byte.
        assert blob.data == content, path
        decoded = decode_text(content)
        assert blob.text == decoded.text and blob.codec == decoded.encoding, path
        # content_bytes exactly when content in UTF-8 is not the blob: another
        # encoding, or a NUL after the first 8,000 bytes (shown as U+FFFD).
        assert blob.content == decoded.text.replace("\0", "\ufffd"), path
        plain = decoded.is_utf8 and "\0" not in decoded.text
        assert blob.content_bytes == (None if plain else content), path
        assert blob.encoding == (None if decoded.is_utf8 else decoded.encoding), path
        if mode in ("100644", "100755"):
            expected_memory[path] = sha
    memory = {
        e.path: e.blob.sha
        for e in db.session.scalars(memory_entries(tracked.project_id, sync=sync))
    }
    assert memory == expected_memory


def assert_single_chain(project_id: int) -> list[ProjectSync]:
    chain = list(db.session.scalars(lineage(project_id)))
    for newer, older in itertools.pairwise(chain):
        assert newer.previous_sync_id == older.id
        assert newer.sequence == older.sequence + 1
    if chain:
        assert chain[-1].previous_sync_id is None and chain[-1].sequence == 1
        project = db.session.get_one(Project, project_id)
        assert project.current_sync_id == chain[0].id
    assert all(s.status is SyncStatus.SUCCEEDED for s in chain)
    return chain

"""Tree hashing is checked against git itself: real ``git`` is the oracle."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hypothesis import given, settings

from sync_jobs.core.tree import (
    BlobHasher,
    FileEntry,
    blob_sha,
    build_trees,
    flatten,
    trees_from_listing,
)
from tests.core.strategies import flat_trees


def git(repo: Path, *args: str, data: bytes | None = None) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], input=data, capture_output=True, check=True
    ).stdout.decode()


def test_blob_sha_matches_git(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    for content in (b"", b"hello\n", bytes(range(256)) * 10):
        assert blob_sha(content) == git(tmp_path, "hash-object", "--stdin", data=content).strip()
        hasher = BlobHasher(len(content))
        for i in range(0, len(content), 7):
            hasher.update(content[i : i + 7])
        assert hasher.hexdigest() == blob_sha(content)


def test_build_trees_matches_git_write_tree(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    files = {
        "README.md": (b"hi\n", "100644"),
        "bin/run": (b"#!/bin/sh\n", "100755"),
        "a/b/c/d.txt": (b"deep\n", "100644"),
        "a/b-c": (b"sorts before a/b/ in git\n", "100644"),
        "sp ace/ünï.txt": (b"x", "100644"),
        "link": (b"a/b/c/d.txt", "120000"),
    }
    flat = {}
    for path, (content, mode) in files.items():
        sha = git(tmp_path, "hash-object", "-w", "--stdin", data=content).strip()
        git(tmp_path, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")
        flat[path] = FileEntry(mode, sha, len(content))
    submodule = "1" * 40
    git(tmp_path, "update-index", "--add", "--cacheinfo", f"160000,{submodule},vendor/lib")
    flat["vendor/lib"] = FileEntry("160000", submodule)
    root, trees = build_trees(flat)
    assert root == git(tmp_path, "write-tree").strip()
    assert flatten(root, trees) == flat
    listing = git(tmp_path, "ls-tree", "-r", "-t", "--long", "-z", root).split("\0")
    rows = []
    for line in filter(None, listing):
        meta, path = line.split("\t", 1)
        mode, _type, sha, size = meta.split()
        rows.append((path, mode, sha, None if size == "-" else int(size)))
    assert trees_from_listing(root, rows) == trees
    assert os.path.basename(tmp_path)  # keeps the tmp repo referenced until the end


@settings(max_examples=200)
@given(flat_trees)
def test_build_then_flatten_round_trips(flat: dict) -> None:
    root, trees = build_trees(flat)
    assert flatten(root, trees) == flat

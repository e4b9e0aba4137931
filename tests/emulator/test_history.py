"""The seeded history generator: reproducible, varied, and fast at scale."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from github_emulator import EmulatorServer
from github_emulator.history import generate_repository, push


def ls_tree(work_dir: Path) -> list[str]:
    out = subprocess.run(["git", "ls-tree", "-r", "-t", "-z", "main"], cwd=work_dir,
                         capture_output=True, check=True).stdout
    return [r.decode() for r in out.split(b"\0") if r]


def test_same_seed_same_commits(tmp_path: Path) -> None:
    one = generate_repository(tmp_path / "a", seed=5, files=50, directories=10, commits=8)
    two = generate_repository(tmp_path / "b", seed=5, files=50, directories=10, commits=8)
    other = generate_repository(tmp_path / "c", seed=6, files=50, directories=10, commits=8)
    assert one.commits == two.commits and one.commits != other.commits


def test_history_covers_special_entries_and_rewrites(tmp_path: Path) -> None:
    generator = generate_repository(tmp_path / "w", seed=9, files=60, directories=12,
                                    commits=25)
    entries = ls_tree(tmp_path / "w")
    modes = {line.split()[0] for line in entries}
    assert {"100644", "100755", "120000", "160000", "040000"} <= modes
    paths = [line.split("\t", 1)[1] for line in entries]
    assert any(" " in p for p in paths) and any(not p.isascii() for p in paths)
    assert max(p.count("/") for p in paths) >= 7
    old_head = generator.head
    rewrite = generator.force_push_rewrite(drop=2)
    assert rewrite.forced and rewrite.parent == generator.commits[-4]
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", str(old_head), "main"],
                              cwd=tmp_path / "w", check=False)
    assert ancestor.returncode == 1
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path / "w",
                            capture_output=True, text=True, check=True).stdout
    assert status == ""


def test_medium_repository_is_served_and_truncated(github_emulator: EmulatorServer,
                                                   tmp_path: Path) -> None:
    _serve_and_check(github_emulator, tmp_path, files=3000, directories=150,
                     max_entries=1000)


@pytest.mark.slow
def test_fifty_thousand_files(github_emulator: EmulatorServer, tmp_path: Path) -> None:
    _serve_and_check(github_emulator, tmp_path, files=50_000, directories=2000,
                     max_entries=100_000)


def _serve_and_check(server: EmulatorServer, tmp_path: Path, *, files: int,
                     directories: int, max_entries: int) -> None:
    from github_emulator.testing import installation_client

    work = tmp_path / "big"
    generate_repository(work, seed=3, files=files, directories=directories,
                        sync_worktree=False)
    repo = server.create_repository("octo", "big")
    installation_id = server.install("octo", [repo])
    push(work, server.clone_url(repo))
    server.knobs.tree_max_entries = max_entries
    client = installation_client(server, installation_id)
    tree = client.rest.git.get_tree("octo", "big", "main", recursive="1").parsed_data
    expected = ls_tree(work)
    if len(expected) > max_entries or tree.truncated:
        assert tree.truncated and len(tree.tree) < len(expected)
    else:
        assert len(tree.tree) == len(expected)
    directories_seen = {e.path for e in tree.tree if e.type == "tree"}
    assert len(directories_seen) >= min(directories, len(tree.tree)) // 2

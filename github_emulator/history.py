"""Seeded repository histories for tests and benchmarks, pushable to the emulator.

Every commit is written with ``git fast-import``, so a 50,000-file initial commit
takes seconds instead of 50,000 ``git add`` calls, and the same seed always gives
the same commit SHAs. Changes cover what a sync engine must get right: adds, edits,
deletes, renames, 100644<->100755, symlinks, submodule gitlinks (160000), binary and
empty files, deep and wide directories, unicode and spaces in paths, and force
pushes that rewrite history.
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .hooks import PUSHER_ENV

BRANCH = "main"
AUTHOR = "History Generator <generator@example.com>"
EPOCH = 1_700_000_000
"""Commit timestamps start here and advance a minute per commit (stable SHAs)."""

REGULAR, EXECUTABLE, SYMLINK, GITLINK = "100644", "100755", "120000", "160000"

_NAME_PARTS = ["src", "docs", "lib", "data", "tests", "assets", "notes", "core",
               "ünïcødé", "with space", "深い", "x"]
_CHANGE_KINDS = ["add", "add", "edit", "edit", "edit", "delete", "rename", "mode",
                 "symlink", "submodule", "binary", "empty", "delete_directory"]


@dataclass
class ChangeRecord:
    """What one generated commit did, for tests to check a sync against."""

    sha: str
    parent: str | None
    kinds: list[str]
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    forced: bool = False


def _git(work_dir: Path, *args: str, input: bytes | None = None,
         env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=work_dir, input=input, capture_output=True,
                            check=False, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode().strip()


class HistoryGenerator:
    """Writes random but reproducible commits to ``BRANCH`` of a working repository.

    The model of the tree is kept in memory (path -> (mode, content)), so each commit
    is one fast-import stream of just its changes. With ``sync_worktree`` the checkout
    follows each commit, so people can keep committing there with plain git.
    """

    def __init__(self, work_dir: Path | str, seed: int, *, sync_worktree: bool = True) -> None:
        self.work_dir = Path(work_dir)
        self.rng = random.Random(seed)
        self.sync_worktree = sync_worktree
        self.files: dict[str, tuple[str, bytes]] = {}
        self.commits: list[str] = []
        """Every commit written, rewritten ones included, oldest first."""
        self.head: str | None = None
        self._snapshots: dict[str, dict[str, tuple[str, bytes]]] = {}
        if not (self.work_dir / ".git").exists():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            _git(self.work_dir, "init", "--quiet", "-b", BRANCH)

    # -- content --------------------------------------------------------------------

    def _text(self) -> bytes:
        lines = self.rng.randint(1, 12)
        words = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "η", "theta"]
        return "".join(" ".join(self.rng.choices(words, k=self.rng.randint(1, 8))) + "\n"
                       for _ in range(lines)).encode()

    def _binary(self) -> bytes:
        return b"\x00\x89PNG\r\n\x1a\n" + self.rng.randbytes(self.rng.randint(16, 256))

    def _directory(self) -> str:
        depth = self.rng.choice([0, 1, 1, 2, 2, 3, 8])
        return "/".join(f"{self.rng.choice(_NAME_PARTS)}{self.rng.randint(0, 3)}"
                        for _ in range(depth))

    def _new_path(self, directory: str | None = None, suffix: str = ".txt") -> str:
        directory = self._directory() if directory is None else directory
        for _ in range(100):
            stem = self.rng.choice(["file", "read me", "naïve", "ファイル", "data"])
            path = f"{directory}/{stem}-{self.rng.randint(0, 10**6)}{suffix}".lstrip("/")
            if path not in self.files and not self._conflicts(path):
                return path
        raise RuntimeError("no free path found")

    def _conflicts(self, path: str) -> bool:
        """A file where a directory must go (or the reverse) would break the tree."""
        parts = path.split("/")
        return any("/".join(parts[:i]) in self.files for i in range(1, len(parts)))

    # -- commits --------------------------------------------------------------------

    def _commit(self, message: str, changes: dict[str, tuple[str, bytes] | None], *,
                parent: str | None) -> str:
        index = len(self.commits)
        stamp = f"{EPOCH + index * 60} +0000"
        lines = [f"commit refs/heads/{BRANCH}".encode(),
                 f"author {AUTHOR} {stamp}".encode(),
                 f"committer {AUTHOR} {stamp}".encode()]
        encoded = message.encode()
        lines += [f"data {len(encoded)}".encode(), encoded]
        if parent:
            lines.append(f"from {parent}".encode())
        elif self.head:
            lines.append(b"deleteall")
        for path, entry in sorted(changes.items()):
            if entry is None:
                lines.append(b"D " + path.encode())
            elif entry[0] == GITLINK:
                lines.append(f"M {GITLINK} {entry[1].decode()} {path}".encode())
            else:
                lines.append(f"M {entry[0]} inline {path}".encode())
                lines += [f"data {len(entry[1])}".encode(), entry[1]]
        lines.append(b"done\n")
        _git(self.work_dir, "fast-import", "--quiet", "--force", "--done",
             input=b"\n".join(lines))
        sha = _git(self.work_dir, "rev-parse", f"refs/heads/{BRANCH}")
        for path, entry in changes.items():
            if entry is None:
                self.files.pop(path, None)
            else:
                self.files[path] = entry
        self.commits.append(sha)
        self.head = sha
        self._snapshots[sha] = dict(self.files)
        if self.sync_worktree:
            _git(self.work_dir, "reset", "--quiet", "--hard", sha)
        return sha

    def _first_parent_chain(self) -> list[str]:
        """Commits of the current branch, newest first."""
        out = _git(self.work_dir, "rev-list", "--first-parent", f"refs/heads/{BRANCH}")
        return out.split()

    def initial_commit(self, *, files: int, directories: int) -> ChangeRecord:
        """One commit with ``files`` files spread over about ``directories`` folders,
        including every special kind of entry at least once."""
        folders = sorted({self._directory() for _ in range(directories * 2)} - {""})
        folders = ["", *folders][:max(directories, 1)]
        while len(folders) < directories:
            folders.append(f"wide/dir{len(folders)}")
        changes: dict[str, tuple[str, bytes] | None] = {}
        for number in range(files):
            folder = folders[number % len(folders)]
            path = f"{folder}/f{number}.txt".lstrip("/")
            changes[path] = (REGULAR, self._text())
        specials: dict[str, tuple[str, bytes]] = {
            "empty.txt": (REGULAR, b""), "bin/tool.sh": (EXECUTABLE, b"#!/bin/sh\necho hi\n"),
            "image.png": (REGULAR, self._binary()), "link-to-empty": (SYMLINK, b"empty.txt"),
            "vendor/module": (GITLINK, self.rng.randbytes(20).hex().encode()),
            "a/b/c/d/e/f/g/h/deep file.txt": (REGULAR, self._text()),
            "ünïcødé dir/naïve name.md": (REGULAR, self._text()),
        }
        changes.update(specials)
        sha = self._commit("Initial commit", changes, parent=None)
        return ChangeRecord(sha, None, ["initial"], added=sorted(changes))

    def commit_random_change(self) -> ChangeRecord:
        """One commit of one to three random changes on top of the current head."""
        kinds = self.rng.sample(_CHANGE_KINDS, k=self.rng.randint(1, 3))
        record = ChangeRecord("", self.head, kinds)
        changes: dict[str, tuple[str, bytes] | None] = {}
        regular = sorted(p for p, (mode, _) in self.files.items()
                         if mode in (REGULAR, EXECUTABLE))
        for kind in kinds:
            candidates = [p for p in regular if p not in changes]
            if kind in ("add", "binary", "empty", "symlink", "submodule") or not candidates:
                path = self._new_path(suffix={"binary": ".bin", "symlink": ".lnk",
                                              "submodule": ""}.get(kind, ".txt"))
                if kind == "binary":
                    entry = (REGULAR, self._binary())
                elif kind == "empty":
                    entry = (REGULAR, b"")
                elif kind == "symlink":
                    entry = (SYMLINK, (candidates[0] if candidates else "nowhere").encode())
                elif kind == "submodule":
                    entry = (GITLINK, self.rng.randbytes(20).hex().encode())
                else:
                    entry = (REGULAR, self._text())
                changes[path] = entry
                record.added.append(path)
                continue
            path = self.rng.choice(candidates)
            mode, content = self.files[path]
            if kind == "edit":
                changes[path] = (mode, content + self._text())
                record.modified.append(path)
            elif kind == "delete":
                changes[path] = None
                record.removed.append(path)
            elif kind == "rename":
                target = self._new_path()
                changes[path] = None
                changes[target] = (mode, content)
                record.renamed.append((path, target))
            elif kind == "mode":
                changes[path] = (EXECUTABLE if mode == REGULAR else REGULAR, content)
                record.modified.append(path)
            elif kind == "delete_directory":
                folder = path.rsplit("/", 1)[0] if "/" in path else None
                for victim in (p for p in self.files if folder and p.startswith(folder + "/")):
                    changes[victim] = None
                    record.removed.append(victim)
        record.sha = self._commit(f"Change {len(self.commits)}: {', '.join(kinds)}", changes,
                                  parent=self.head)
        return record

    def reset_to(self, commit: str) -> None:
        """Point the branch back at ``commit``, one of this history's (``git reset``);
        pushing it needs ``--force``."""
        _git(self.work_dir, "update-ref", f"refs/heads/{BRANCH}", commit)
        self.files = dict(self._snapshots[commit])
        self.head = commit
        if self.sync_worktree:
            _git(self.work_dir, "reset", "--quiet", "--hard", commit)

    def force_push_rewrite(self, *, drop: int = 1) -> ChangeRecord:
        """Drop the last ``drop`` commits and commit a different change in their
        place; pushing the result needs ``--force``, like a rewritten branch."""
        history = self._first_parent_chain()
        if len(history) <= drop:
            raise ValueError("not enough history to rewrite")
        base = history[drop]
        self.files = dict(self._snapshots[base])
        self.head = base
        record = self.commit_random_change()
        record.parent = base
        record.forced = True
        return record


def generate_repository(work_dir: Path | str, *, seed: int, files: int = 200,
                        directories: int = 20, commits: int = 0,
                        sync_worktree: bool = True) -> HistoryGenerator:
    """A working repository with one big initial commit plus ``commits`` random
    changes; keep the returned generator to add more."""
    generator = HistoryGenerator(work_dir, seed, sync_worktree=sync_worktree)
    generator.initial_commit(files=files, directories=directories)
    for _ in range(commits):
        generator.commit_random_change()
    return generator


def push(work_dir: Path | str, remote: str, *, branch: str = BRANCH, force: bool = False,
         pusher: str | None = None, delete: bool = False) -> None:
    """``git push`` one branch to an emulated repository (a path from
    ``server.clone_url``); the hook delivers the push webhook before this returns."""
    env = dict(os.environ)
    if pusher:
        env[PUSHER_ENV] = pusher
    refspec = f":refs/heads/{branch}" if delete else f"refs/heads/{branch}:refs/heads/{branch}"
    args = ["push", "--quiet"] + (["--force"] if force else []) + [remote, refspec]
    _git(Path(work_dir), *args, env=env)

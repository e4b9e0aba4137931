"""Read access to one bare git repository through the git command line.

git itself is the source of truth the tests compare against (``git ls-tree``,
``git cat-file``), so the emulator reads with the same tool instead of a second
implementation that could disagree on modes, sizes or odd paths.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import GitCommandError

SHA_PATTERN = re.compile(r"^[0-9a-f]{40}$")
"""A full hexadecimal SHA-1 object name."""


@dataclass(frozen=True)
class Signature:
    """Author or committer line of a commit."""

    name: str
    email: str
    date: datetime  # aware, in the signer's own offset


@dataclass(frozen=True)
class CommitInfo:
    """The parsed fields of a commit object."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    message: str


@dataclass(frozen=True)
class TreeEntry:
    """One line of ``git ls-tree --long``; ``size`` is None for trees and gitlinks."""

    mode: str
    type: str
    sha: str
    size: int | None
    path: str


@dataclass(frozen=True)
class FileChange:
    """One path changed between two commits, with its line counts."""

    status: str  # added, removed, modified, renamed
    path: str
    sha: str | None
    additions: int
    deletions: int
    previous_path: str | None = None


_STATUS_NAMES = {"A": "added", "D": "removed", "M": "modified", "T": "modified",
                 "R": "renamed", "C": "added"}


def _parse_signature(raw: str) -> Signature:
    # "Name <email> 1700000000 +0200"
    match = re.match(r"^(.*) <(.*)> (\d+) ([+-])(\d{2})(\d{2})$", raw)
    if not match:
        raise GitCommandError(f"unparsable signature: {raw!r}")
    name, email, stamp, sign, hours, minutes = match.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    tz = timezone(-offset if sign == "-" else offset)
    return Signature(name, email, datetime.fromtimestamp(int(stamp), tz))


class GitStore:
    """Reads (and creates) one bare repository on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, input: bytes | None = None) -> bytes:
        """Run git against this repository; raise with stderr on failure."""
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), *args],
            input=input, capture_output=True, check=False,
        )
        if result.returncode != 0:
            raise GitCommandError(
                f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def init_bare(self, default_branch: str) -> None:
        """Create the bare repository with ``HEAD`` pointing at the default branch."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "--quiet", "--bare", str(self.path)],
                       check=True, capture_output=True)
        self.set_default_branch(default_branch)
        # Pushes that rewrite history must keep the old objects readable for the
        # post-receive hook, and tests push without a committer identity set up.
        self.git("config", "receive.denyNonFastForwards", "false")
        self.git("config", "gc.auto", "0")

    def set_default_branch(self, branch: str) -> None:
        self.git("symbolic-ref", "HEAD", f"refs/heads/{branch}")

    def resolve(self, rev: str, kind: str = "commit") -> str | None:
        """SHA of ``rev`` peeled to ``kind`` (commit, tree, blob), or None if absent."""
        if rev.startswith("-"):
            return None
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "rev-parse", "--verify", "--quiet",
             "--end-of-options", f"{rev}^{{{kind}}}"],
            capture_output=True, check=False,
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def object_type(self, sha: str) -> str | None:
        """``blob``, ``tree``, ``commit`` or ``tag`` for a full SHA; None if absent."""
        if not SHA_PATTERN.match(sha):
            return None
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "cat-file", "-t", sha],
            capture_output=True, check=False,
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def branches(self) -> list[tuple[str, str]]:
        """(name, head SHA) of every branch, sorted by name like GitHub's list."""
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)",
                       "refs/heads/").decode()
        pairs = []
        for line in out.splitlines():
            sha, ref = line.split(" ", 1)
            pairs.append((ref.removeprefix("refs/heads/"), sha))
        return sorted(pairs)

    def refs(self, prefix: str = "refs/") -> list[tuple[str, str]]:
        """(full ref name, SHA) under ``prefix``, sorted."""
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", prefix).decode()
        return sorted((ref, sha) for sha, ref in (line.split(" ", 1)
                                                  for line in out.splitlines()))

    def is_empty(self) -> bool:
        return not self.git("for-each-ref", "--count=1", "refs/").strip()

    def read_commit(self, sha: str) -> CommitInfo:
        raw = self.git("cat-file", "commit", sha).decode("utf-8", errors="replace")
        header, _, message = raw.partition("\n\n")
        tree = ""
        parents: list[str] = []
        author = committer = None
        for line in header.splitlines():
            key, _, value = line.partition(" ")
            if key == "tree":
                tree = value
            elif key == "parent":
                parents.append(value)
            elif key == "author":
                author = _parse_signature(value)
            elif key == "committer":
                committer = _parse_signature(value)
        if author is None or committer is None:
            raise GitCommandError(f"commit {sha} lacks author or committer")
        return CommitInfo(sha, tree, tuple(parents), author, committer, message)

    def read_tree(self, sha: str, *, recursive: bool) -> list[TreeEntry]:
        """Entries of a tree; recursive listings include the subtrees themselves."""
        args = ["ls-tree", "-z", "--long"]
        if recursive:
            args += ["-r", "-t"]
        entries = []
        for record in self.git(*args, sha).split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, object_sha, size = meta.decode().split()
            entries.append(TreeEntry(mode, kind, object_sha,
                                     None if size == "-" else int(size),
                                     path.decode("utf-8", errors="surrogateescape")))
        return entries

    def read_blob(self, sha: str) -> bytes:
        return self.git("cat-file", "blob", sha)

    def rev_list(self, *revs: str, limit: int | None = None) -> list[str]:
        """Commits reachable as ``git rev-list --reverse`` (oldest first)."""
        args = ["rev-list", "--reverse", "--topo-order"]
        out = self.git(*args, *revs, "--").decode().split()
        return out[-limit:] if limit is not None else out

    def count(self, *revs: str) -> int:
        return int(self.git("rev-list", "--count", *revs, "--").decode().strip())

    def merge_base(self, a: str, b: str) -> str | None:
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "merge-base", a, b],
            capture_output=True, check=False,
        )
        return result.stdout.decode().strip() if result.returncode == 0 else None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        result = subprocess.run(
            ["git", "--git-dir", str(self.path), "merge-base", "--is-ancestor",
             ancestor, descendant],
            capture_output=True, check=False,
        )
        return result.returncode == 0

    def diff(self, old: str | None, new: str, *, renames: bool) -> list[FileChange]:
        """Paths changed from ``old`` (None: the empty tree) to ``new``, by path."""
        from .defaults import EMPTY_TREE_SHA

        base = old or EMPTY_TREE_SHA
        rename_flag = "-M" if renames else "--no-renames"
        raw = self.git("diff-tree", "-r", "-z", "--raw", rename_flag, base, new).split(b"\0")
        numstat = self.git("diff-tree", "-r", "-z", "--numstat", rename_flag,
                           base, new).split(b"\0")
        counts = _parse_numstat(numstat)
        changes = []
        index = 0
        while index < len(raw) and raw[index]:
            meta = raw[index].decode()
            fields = meta.lstrip(":").split()
            letter = fields[4][0]
            if letter in "RC":
                old_path = raw[index + 1].decode("utf-8", errors="surrogateescape")
                path = raw[index + 2].decode("utf-8", errors="surrogateescape")
                index += 3
            else:
                old_path = None
                path = raw[index + 1].decode("utf-8", errors="surrogateescape")
                index += 2
            status = _STATUS_NAMES.get(letter, "modified")
            new_sha = None if status == "removed" else fields[3]
            additions, deletions = counts.get(path, (0, 0))
            changes.append(FileChange(status, path, new_sha if new_sha else fields[2],
                                      additions, deletions, old_path))
        return sorted(changes, key=lambda change: change.path)

    def archive(self, sha: str, prefix: str) -> bytes:
        """Gzip tarball of a commit with every path under ``prefix``, like codeload."""
        return self.git("archive", "--format=tar.gz", f"--prefix={prefix}", sha)


def _parse_numstat(records: list[bytes]) -> dict[str, tuple[int, int]]:
    """Map path -> (additions, deletions); binary files count as zero lines."""
    counts: dict[str, tuple[int, int]] = {}
    index = 0
    while index < len(records) and records[index]:
        added, deleted, path = records[index].decode("utf-8", errors="surrogateescape").split(
            "\t", 2)
        if path == "":  # rename: the next two records are old and new path
            path = records[index + 2].decode("utf-8", errors="surrogateescape")
            index += 3
        else:
            index += 1
        counts[path] = (int(added) if added != "-" else 0,
                        int(deleted) if deleted != "-" else 0)
    return counts

"""Tree diff over plain data: two flat trees in, one sorted :class:`Delta` out.

Following zoekt's ``prepareDeltaBuild``: a change with a new side adds that
(path, entry); a change with an old side closes the old version. Outputs are sorted so
two runs over the same input produce identical deltas (and identical database writes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sync_jobs.core.tree import FileEntry, FlatTree


class ChangeKind(StrEnum):
    """How one path differs between the old and the new tree."""

    ADDED = "added"
    MODIFIED = "modified"  # same kind, different object (and maybe a mode change too)
    REMOVED = "removed"
    MODE_CHANGED = "mode-changed"  # same blob, 100644 <-> 100755
    TYPE_CHANGED = "type-changed"  # file <-> symlink <-> submodule


@dataclass(frozen=True, order=True)
class Change:
    path: str
    kind: ChangeKind
    old: FileEntry | None
    new: FileEntry | None


@dataclass(frozen=True, order=True)
class Rename:
    """A removed and an added path with the same blob (and kind): git's exact rename."""

    old_path: str
    new_path: str
    sha: str


@dataclass(frozen=True)
class Delta:
    changes: tuple[Change, ...] = ()
    renames: tuple[Rename, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.changes)

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for change in self.changes if change.kind is kind)

    @property
    def closed_paths(self) -> list[str]:
        """Paths whose old version ends in this sync (everything but pure additions)."""
        return [c.path for c in self.changes if c.old is not None]

    @property
    def opened(self) -> list[tuple[str, FileEntry]]:
        """Paths that get a new version in this sync."""
        return [(c.path, c.new) for c in self.changes if c.new is not None]


def classify(old: FileEntry | None, new: FileEntry | None) -> ChangeKind | None:
    """The kind of change from ``old`` to ``new``; None when they are the same."""
    if old is None and new is None:
        return None
    if old is None:
        return ChangeKind.ADDED
    if new is None:
        return ChangeKind.REMOVED
    if old.mode == new.mode and old.sha == new.sha:
        return None
    if old.kind is not new.kind:
        return ChangeKind.TYPE_CHANGED
    if old.sha == new.sha:
        return ChangeKind.MODE_CHANGED
    return ChangeKind.MODIFIED


def pair_renames(changes: list[Change]) -> tuple[Rename, ...]:
    """Pair removed and added paths of the same blob and kind, deterministically.

    Several candidates for one blob (copies, duplicates) pair in path order; the
    leftovers stay plain additions and removals.
    """
    removed: dict[tuple[str, str], list[str]] = defaultdict(list)
    for change in changes:
        if change.kind is ChangeKind.REMOVED and change.old is not None:
            removed[(change.old.kind, change.old.sha)].append(change.path)
    renames = []
    for change in changes:
        if change.kind is ChangeKind.ADDED and change.new is not None:
            candidates = removed.get((change.new.kind, change.new.sha))
            if candidates:
                renames.append(Rename(candidates.pop(0), change.path, change.new.sha))
    return tuple(sorted(renames))


def diff_flat(old: Mapping[str, FileEntry], new: Mapping[str, FileEntry]) -> Delta:
    """Every path that differs between two flat trees, sorted by path."""
    changes = []
    for path in old.keys() | new.keys():
        kind = classify(old.get(path), new.get(path))
        if kind is not None:
            changes.append(Change(path, kind, old.get(path), new.get(path)))
    changes.sort()
    return Delta(tuple(changes), pair_renames(changes))


def apply_delta(old: Mapping[str, FileEntry], delta: Delta) -> FlatTree:
    """``old`` with ``delta`` applied; ``apply_delta(a, diff_flat(a, b)) == b``."""
    result = dict(old)
    for change in delta.changes:
        if change.old is not None and result.get(change.path) != change.old:
            raise ValueError(f"delta does not apply: {change.path!r} is not {change.old}")
        if change.new is None:
            result.pop(change.path, None)
        else:
            result[change.path] = change.new
    return result

"""Top-down diff of two git trees that reads only the tree objects it must.

:class:`MerkleWalk` is a state machine: the caller asks :meth:`MerkleWalk.wanted` for
the tree SHAs it needs, gets them from wherever it likes (the database, a tarball, one
API call each) and hands them to :meth:`MerkleWalk.provide`. Two subtrees with the same
SHA are equal, so they are never opened: a one-file change four directories deep
reads five tree objects on each side, whatever the repository's size.

With no old root the walk lists the whole new tree (everything is "added"), which is
how a full sync reuses the same machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from sync_jobs.core.diff import Delta, diff_flat
from sync_jobs.core.tree import EntryKind, FileEntry, FlatTree, TreeItem, join, kind_of


class DirectoryPair(NamedTuple):
    """A directory still to compare: its path and its tree on each side (None: absent)."""

    path: str
    old_sha: str | None
    new_sha: str | None


class WantedPath(NamedTuple):
    """Where a wanted tree sits, and the old side's tree at that path."""

    path: str
    old_sha: str | None


def _same_entry(old: TreeItem, new: TreeItem) -> bool:
    """Equal mode, type and SHA: a size read elsewhere (or missing) is no change."""
    return (old.mode, old.type, old.sha) == (new.mode, new.type, new.sha)


def _subtree(item: TreeItem | None) -> str | None:
    """The tree SHA an entry points at, or None when it is not a directory."""
    return item.sha if item is not None and kind_of(item.mode) is EntryKind.TREE else None


class MerkleWalk:
    def __init__(self, old_root: str | None, new_root: str) -> None:
        self._trees: dict[str, list[TreeItem]] = {}
        self._pending: list[DirectoryPair] = []
        if old_root != new_root:
            self._pending.append(DirectoryPair("", old_root, new_root))
        self._old: FlatTree = {}
        self._new: FlatTree = {}
        self.new_tree_shas: set[str] = set()
        """Every tree object of the new side that the walk opened."""
        self.levels = 0

    @property
    def done(self) -> bool:
        return not self._pending

    def wanted(self) -> set[str]:
        """Tree SHAs the walk needs before it can go further (empty when done)."""
        need = set()
        for pair in self._pending:
            for sha in (pair.old_sha, pair.new_sha):
                if sha is not None and sha not in self._trees:
                    need.add(sha)
        return need

    def wanted_paths(self) -> dict[str, WantedPath]:
        """Each wanted SHA with a path it sits at and the old tree SHA at that path.

        Callers use the path to guess a subtree's size before choosing how to read it
        (one level or the recursive listing); an identical tree at several paths is
        listed once, at its first path in sorted order.
        """
        found: dict[str, WantedPath] = {}
        for pair in sorted(self._pending, key=lambda pair: pair.path):
            for sha in (pair.old_sha, pair.new_sha):
                if sha is not None and sha not in self._trees and sha not in found:
                    found[sha] = WantedPath(pair.path, pair.old_sha)
        return found

    def provide(self, trees: Mapping[str, list[TreeItem]]) -> None:
        """Hand over tree objects (extra ones are kept; they may be needed deeper down)."""
        self._trees.update(trees)
        self._advance()

    def _advance(self) -> None:
        while True:
            ready = [pair for pair in self._pending if self._ready(pair)]
            if not ready:
                return
            self.levels += 1
            self._pending = [pair for pair in self._pending if not self._ready(pair)]
            for pair in ready:
                self._compare(pair)

    def _ready(self, pair: DirectoryPair) -> bool:
        return all(sha is None or sha in self._trees for sha in (pair.old_sha, pair.new_sha))

    def _items(self, sha: str | None) -> dict[str, TreeItem]:
        return {item.name: item for item in self._trees[sha]} if sha else {}

    def _compare(self, pair: DirectoryPair) -> None:
        if pair.new_sha is not None:
            self.new_tree_shas.add(pair.new_sha)
        old_items, new_items = self._items(pair.old_sha), self._items(pair.new_sha)
        for name in old_items.keys() | new_items.keys():
            old_item, new_item = old_items.get(name), new_items.get(name)
            if old_item == new_item or (old_item and new_item and _same_entry(old_item, new_item)):
                continue
            child = join(pair.path, name)
            old_tree, new_tree = _subtree(old_item), _subtree(new_item)
            if old_item and old_tree is None:
                self._old[child] = FileEntry(old_item.mode, old_item.sha, old_item.size)
            if new_item and new_tree is None:
                self._new[child] = FileEntry(new_item.mode, new_item.sha, new_item.size)
            if old_tree is not None or new_tree is not None:
                self._pending.append(DirectoryPair(child, old_tree, new_tree))

    def delta(self) -> Delta:
        """The changes between the two roots (call when :attr:`done`)."""
        if not self.done:
            raise RuntimeError("the walk still needs trees: " + ", ".join(sorted(self.wanted())))
        return diff_flat(self._old, self._new)

    def new_files(self) -> FlatTree:
        """Every non-tree path the walk saw on the new side (all of them without an old root)."""
        return dict(self._new)

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

from sync_jobs.core.diff import Delta, diff_flat
from sync_jobs.core.tree import EntryKind, FileEntry, FlatTree, TreeItem, join, kind_of


class MerkleWalk:
    def __init__(self, old_root: str | None, new_root: str) -> None:
        self._trees: dict[str, list[TreeItem]] = {}
        # Directory pairs still to compare: (path, old tree SHA, new tree SHA).
        self._pending: list[tuple[str, str | None, str | None]] = []
        if old_root != new_root:
            self._pending.append(("", old_root, new_root))
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
        for _path, old_sha, new_sha in self._pending:
            for sha in (old_sha, new_sha):
                if sha is not None and sha not in self._trees:
                    need.add(sha)
        return need

    def wanted_paths(self) -> dict[str, tuple[str, str | None]]:
        """Each wanted SHA with a path it sits at and the old tree SHA at that path.

        Callers use the path to guess a subtree's size before choosing how to read it
        (one level or the recursive listing); an identical tree at several paths is
        listed once, at its first path in sorted order.
        """
        found: dict[str, tuple[str, str | None]] = {}
        for path, old_sha, new_sha in sorted(self._pending, key=lambda p: p[0]):
            for sha in (old_sha, new_sha):
                if sha is not None and sha not in self._trees and sha not in found:
                    found[sha] = (path, old_sha)
        return found

    def provide(self, trees: Mapping[str, list[TreeItem]]) -> None:
        """Hand over tree objects (extra ones are kept; they may be needed deeper down)."""
        self._trees.update(trees)
        self._advance()

    def _advance(self) -> None:
        while True:
            ready = [p for p in self._pending if self._has(p[1]) and self._has(p[2])]
            if not ready:
                return
            self.levels += 1
            self._pending = [p for p in self._pending if not (self._has(p[1]) and self._has(p[2]))]
            for path, old_sha, new_sha in ready:
                self._compare(path, old_sha, new_sha)

    def _has(self, sha: str | None) -> bool:
        return sha is None or sha in self._trees

    def _compare(self, path: str, old_sha: str | None, new_sha: str | None) -> None:
        if new_sha is not None:
            self.new_tree_shas.add(new_sha)
        old_items = {i[0]: i for i in self._trees[old_sha]} if old_sha else {}
        new_items = {i[0]: i for i in self._trees[new_sha]} if new_sha else {}
        for name in old_items.keys() | new_items.keys():
            old_item, new_item = old_items.get(name), new_items.get(name)
            if old_item == new_item or (old_item and new_item and old_item[1:4] == new_item[1:4]):
                continue
            child = join(path, name)
            old_tree = old_item[3] if old_item and kind_of(old_item[1]) is EntryKind.TREE else None
            new_tree = new_item[3] if new_item and kind_of(new_item[1]) is EntryKind.TREE else None
            if old_item and old_tree is None:
                self._old[child] = FileEntry(old_item[1], old_item[3], old_item[4])
            if new_item and new_tree is None:
                self._new[child] = FileEntry(new_item[1], new_item[3], new_item[4])
            if old_tree is not None or new_tree is not None:
                self._pending.append((child, old_tree, new_tree))

    def delta(self) -> Delta:
        """The changes between the two roots (call when :attr:`done`)."""
        if not self.done:
            raise RuntimeError("the walk still needs trees: " + ", ".join(sorted(self.wanted())))
        return diff_flat(self._old, self._new)

    def new_files(self) -> FlatTree:
        """Every non-tree path the walk saw on the new side (all of them without an old root)."""
        return dict(self._new)

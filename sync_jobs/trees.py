"""Tree objects for a sync's Merkle walk: this sync's memory, then the database, then GitHub.

A tree the walk wants is looked up in the trees this sync already holds (a tarball's,
earlier answers), then in the GitTree rows (trees never change, so a stored one is
valid forever), and only then fetched. How it is fetched is decided by
:func:`sync_jobs.core.plan.plan_tree_fetches`: one call for the whole subtree
(``recursive=1``) when it is known or likely to be small, one level otherwise. A
recursive answer brings every tree below at once, so the walk descends through it
without further calls; a truncated one falls back to that tree's single level, and
its subdirectories are planned again on the next step.

Every tree fetched from GitHub is stored afterwards (:meth:`TreeSource.to_store`),
whether the walk opened it or not, so later syncs skip it from the database.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from sync_jobs import defaults
from sync_jobs.apply import count_files, stored_trees
from sync_jobs.connector import GitHubConnector
from sync_jobs.core.merkle import MerkleWalk
from sync_jobs.core.plan import TreeFetch, WantedTree, plan_tree_fetches
from sync_jobs.core.tree import FlatTree, TreeItem, trees_from_listing

log = logging.getLogger(__name__)

SizeHint = Callable[[str, str | None], int | None]
"""``(path, old tree SHA at that path)`` → files known below that path, or None."""


class TreeSource:
    """Answers a :class:`MerkleWalk`'s requests with as few API calls as it can."""

    def __init__(self, gh: GitHubConnector, repository_id: int, *, size_hint: SizeHint) -> None:
        self._gh = gh
        self._repository_id = repository_id
        self._size_hint = size_hint
        self.memory: dict[str, list[TreeItem]] = {}
        self.fetched: set[str] = set()
        """SHAs of the tree objects that came from GitHub in this sync."""
        self.truncated: set[str] = set()
        """Trees whose recursive listing GitHub truncated in this sync."""

    def add(self, trees: dict[str, list[TreeItem]]) -> None:
        self.memory.update(trees)

    def drive(self, walk: MerkleWalk) -> None:
        """Run the walk to its end."""
        while not walk.done:
            wanted = walk.wanted()
            found = {sha: self.memory[sha] for sha in wanted if sha in self.memory}
            found.update(stored_trees(self._repository_id, wanted - found.keys()))
            missing = wanted - found.keys()
            if missing:
                self._fetch(walk, missing)
                found.update({sha: self.memory[sha] for sha in missing})
            walk.provide(found)

    def _fetch(self, walk: MerkleWalk, missing: set[str]) -> None:
        paths = walk.wanted_paths()
        # Two rounds at most: a truncated recursive listing is retried as one level.
        while missing - self.memory.keys():
            todo = sorted(missing - self.memory.keys())
            plan = plan_tree_fetches(
                [WantedTree(sha, paths[sha].path, self._size_hint(*paths[sha])) for sha in todo],
                max_files=defaults.RECURSIVE_TREE_MAX_FILES,
                truncated=self.truncated,
            )
            levels, listings = self._gh.trees_and_listings(
                [sha for sha, how in plan.items() if how is TreeFetch.LEVEL],
                [sha for sha, how in plan.items() if how is TreeFetch.RECURSIVE],
            )
            self._keep(levels)
            for sha, listing in listings.items():
                if listing is None:
                    log.info(
                        "recursive tree %s (%s) is truncated; reading it by levels",
                        sha,
                        paths[sha].path or "/",
                    )
                    self.truncated.add(sha)
                else:
                    self._keep(trees_from_listing(sha, listing))

    def _keep(self, trees: dict[str, list[TreeItem]]) -> None:
        self.memory.update(trees)
        self.fetched.update(trees)

    def to_store(self, opened: Iterable[str]) -> dict[str, list[TreeItem]]:
        """Trees for GitTree rows: every tree the walk opened and every fetched one."""
        return {sha: self.memory[sha] for sha in {*opened, *self.fetched} if sha in self.memory}


def stored_sizes(project_id: int, total: int) -> SizeHint:
    """Sizes from the project's current state: exact for a directory the old tree has,
    unknown (None) for one new in this commit."""

    def hint(path: str, old_sha: str | None) -> int | None:
        if not path:
            return total
        return count_files(project_id, under=path) if old_sha is not None else None

    return hint


def listed_sizes(flat: FlatTree) -> SizeHint:
    """Sizes from a tarball's listing, for the trees that differ from it (counted once,
    on first use: usually one or two trees are asked about, sometimes hundreds)."""
    counts: Counter[str] = Counter()

    def hint(path: str, _old_sha: str | None) -> int:
        if not counts:
            for listed in flat:
                parts = listed.split("/")[:-1]
                counts.update("/".join(parts[:depth]) for depth in range(len(parts) + 1))
        return counts[path]

    return hint

"""The walk with recursive subtree listings, as the pipeline drives it: planned per
wanted tree, truncated listings falling back to one level. Old tree + delta == new."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sync_jobs.core.diff import apply_delta, diff_flat
from sync_jobs.core.merkle import MerkleWalk
from sync_jobs.core.plan import TreeFetch, WantedTree, plan_tree_fetches
from sync_jobs.core.tree import (
    EntryKind,
    FileEntry,
    FlatTree,
    TreeItem,
    build_trees,
    kind_of,
    trees_from_listing,
)
from tests.core.strategies import flat_trees


def listing(sha: str, trees: dict[str, list[TreeItem]], prefix: str = "") -> list:
    """GitHub's ``recursive=1`` answer for one tree: every entry below it, trees included."""
    rows = []
    for name, mode, _type, item_sha, size in trees[sha]:
        path = f"{prefix}{name}"
        rows.append((path, mode, item_sha, size))
        if kind_of(mode) is EntryKind.TREE:
            rows.extend(listing(item_sha, trees, f"{path}/"))
    return rows


def files_below(flat: FlatTree, path: str) -> int:
    prefix = f"{path}/" if path else ""
    return sum(1 for p in flat if p.startswith(prefix))


class FakeGitHub:
    """Serves trees by SHA; truncates recursive listings longer than ``max_entries``."""

    def __init__(self, trees: dict[str, list[TreeItem]], max_entries: int) -> None:
        self.trees = trees
        self.max_entries = max_entries
        self.calls: list[tuple[TreeFetch, str]] = []

    def fetch(self, sha: str, how: TreeFetch) -> dict[str, list[TreeItem]] | None:
        self.calls.append((how, sha))
        if how is TreeFetch.LEVEL:
            return {sha: self.trees[sha]}
        rows = listing(sha, self.trees)
        return None if len(rows) > self.max_entries else trees_from_listing(sha, rows)


def drive(walk: MerkleWalk, old: FlatTree, stored: dict, github: FakeGitHub, max_files: int):
    """The pipeline's loop (sync_jobs/trees.py) over plain data."""
    memory: dict[str, list[TreeItem]] = {}
    truncated: set[str] = set()
    while not walk.done:
        wanted = walk.wanted()
        found = {sha: stored[sha] for sha in wanted if sha in stored}
        found.update({sha: memory[sha] for sha in wanted if sha in memory})
        missing = wanted - found.keys()
        paths = walk.wanted_paths()
        while missing - memory.keys():
            todo = sorted(missing - memory.keys())
            plan = plan_tree_fetches(
                [
                    WantedTree(
                        sha,
                        paths[sha][0],
                        files_below(old, paths[sha][0]) if paths[sha][1] else None,
                    )
                    for sha in todo
                ],
                max_files=max_files,
                truncated=truncated,
            )
            for sha, how in plan.items():
                got = github.fetch(sha, how)
                if got is None:
                    truncated.add(sha)
                else:
                    memory.update(got)
        found.update({sha: memory[sha] for sha in missing})
        walk.provide(found)
    return memory, truncated


@settings(max_examples=300)
@given(
    flat_trees,
    flat_trees,
    st.integers(min_value=0, max_value=30),
    st.integers(min_value=0, max_value=30),
)
def test_recursive_and_truncated_fetches_give_the_flat_delta(
    old: dict, new: dict, max_entries: int, max_files: int
) -> None:
    old_root, old_trees = build_trees(old)
    new_root, new_trees = build_trees(new)
    github = FakeGitHub({**old_trees, **new_trees}, max_entries)
    walk = MerkleWalk(old_root, new_root)
    memory, _truncated = drive(walk, old, old_trees, github, max_files)
    delta = walk.delta()
    assert delta == diff_flat(old, new)
    assert apply_delta(old, delta) == new
    # Every tree that came back is a real tree object of the new commit.
    assert all(new_trees[sha] == items for sha, items in memory.items())


def deep_repository() -> FlatTree:
    return {
        f"d{i}/e{j}/f{k}/g/file{n}.txt": FileEntry("100644", f"{i}{j}{k}{n}".ljust(40, "0"), 1)
        for i in range(5)
        for j in range(5)
        for k in range(5)
        for n in range(3)
    }


def test_one_deep_change_costs_the_root_level_and_one_recursive_subtree() -> None:
    old = deep_repository()
    new = dict(old)
    new["d2/e3/f4/g/file1.txt"] = FileEntry("100644", "f" * 40, 2)
    old_root, old_trees = build_trees(old)
    new_root, new_trees = build_trees(new)
    github = FakeGitHub(new_trees, max_entries=100_000)
    walk = MerkleWalk(old_root, new_root)
    # 375 files in all, 75 below d2: the root is read by level, d2 recursively.
    memory, _ = drive(walk, old, old_trees, github, max_files=100)
    assert [how for how, _sha in github.calls] == [TreeFetch.LEVEL, TreeFetch.RECURSIVE]
    assert [c.path for c in walk.delta().changes] == ["d2/e3/f4/g/file1.txt"]
    # The root level, then d2's whole subtree in one answer: d2, 5 e, 25 f, 25 g.
    assert len(memory) == 1 + 1 + 5 + 25 + 25


def test_a_truncated_subtree_falls_back_to_levels() -> None:
    old = deep_repository()
    new = dict(old)
    new["d2/e3/f4/g/file1.txt"] = FileEntry("100644", "f" * 40, 2)
    new["d2/e0/new.txt"] = FileEntry("100644", "e" * 40, 2)
    old_root, old_trees = build_trees(old)
    new_root, new_trees = build_trees(new)
    # d2 lists 75 files + 55 trees: truncated; e0 and e3 list 15 + 10 (or 16 + 10): whole.
    github = FakeGitHub(new_trees, max_entries=50)
    walk = MerkleWalk(old_root, new_root)
    _memory, truncated = drive(walk, old, old_trees, github, max_files=100)
    hows = [how for how, _sha in github.calls]
    assert hows == [
        TreeFetch.LEVEL,  # root: 375 files known, too big
        TreeFetch.RECURSIVE,  # d2: 75 files, tried whole, truncated
        TreeFetch.LEVEL,  # d2 again, one level
        TreeFetch.RECURSIVE,  # e0 and e3, whole
        TreeFetch.RECURSIVE,
    ]
    assert len(truncated) == 1
    assert walk.delta() == diff_flat(old, new)


def test_plan_prefers_recursive_for_small_and_new_trees() -> None:
    wanted = [
        WantedTree("a" * 40, "", 50_000),
        WantedTree("b" * 40, "src", 800),
        WantedTree("c" * 40, "new", None),
        WantedTree("d" * 40, "cut", 10),
    ]
    plan = plan_tree_fetches(wanted, max_files=10_000, truncated={"d" * 40})
    assert plan == {
        "a" * 40: TreeFetch.LEVEL,
        "b" * 40: TreeFetch.RECURSIVE,
        "c" * 40: TreeFetch.RECURSIVE,
        "d" * 40: TreeFetch.LEVEL,
    }
    # One tree object at a big and a small path: one recursive call covers both.
    same = [WantedTree("e" * 40, "big", 20_000), WantedTree("e" * 40, "small", 3)]
    assert plan_tree_fetches(same, max_files=10_000, truncated=set()) == {
        "e" * 40: TreeFetch.RECURSIVE
    }

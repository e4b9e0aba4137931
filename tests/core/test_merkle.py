from __future__ import annotations

from hypothesis import given, settings

from sync_jobs.core.diff import diff_flat
from sync_jobs.core.merkle import MerkleWalk
from sync_jobs.core.tree import FileEntry, build_trees
from tests.core.strategies import flat_trees


def drive(walk: MerkleWalk, trees: dict) -> list[set[str]]:
    """Answer the walk's requests level by level, as the pipeline does; return them."""
    requests = []
    while not walk.done:
        wanted = walk.wanted()
        assert wanted, "a walk that is not done must want something"
        requests.append(wanted)
        walk.provide({sha: trees[sha] for sha in wanted})
    return requests


@settings(max_examples=300)
@given(flat_trees, flat_trees)
def test_merkle_delta_equals_flat_delta(old: dict, new: dict) -> None:
    old_root, old_trees = build_trees(old)
    new_root, new_trees = build_trees(new)
    walk = MerkleWalk(old_root, new_root)
    drive(walk, {**old_trees, **new_trees})
    assert walk.delta() == diff_flat(old, new)


@given(flat_trees)
def test_a_walk_without_old_root_lists_the_whole_tree(new: dict) -> None:
    root, trees = build_trees(new)
    walk = MerkleWalk(None, root)
    drive(walk, trees)
    assert walk.new_files() == new
    assert walk.new_tree_shas == set(trees)


def test_one_deep_change_reads_only_the_changed_path() -> None:
    old = {
        f"d{i}/e{j}/f{k}/g/file{n}.txt": FileEntry("100644", f"{i}{j}{k}{n}".ljust(40, "0"), 1)
        for i in range(5)
        for j in range(5)
        for k in range(5)
        for n in range(3)
    }
    new = dict(old)
    new["d2/e3/f4/g/file1.txt"] = FileEntry("100644", "f" * 40, 2)
    old_root, old_trees = build_trees(old)
    new_root, new_trees = build_trees(new)
    walk = MerkleWalk(old_root, new_root)
    requests = drive(walk, {**old_trees, **new_trees})
    assert len(requests) == 5  # root, d2, e3, f4, g: one level each
    assert sum(len(r - set(old_trees)) for r in requests) == 5
    assert [c.path for c in walk.delta().changes] == ["d2/e3/f4/g/file1.txt"]


def test_same_roots_need_nothing() -> None:
    walk = MerkleWalk("a" * 40, "a" * 40)
    assert walk.done and walk.wanted() == set() and not walk.delta()

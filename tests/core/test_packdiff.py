"""Pack trees against stored Merkle trees: the walk over them gives exactly the delta of
the two flat trees, whatever the pack lacks (reverts, moved directories)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dulwich.objects import ObjectID, Tree

from sync_jobs.core.diff import diff_flat
from sync_jobs.core.merkle import MerkleWalk
from sync_jobs.core.packdiff import (
    PackContents,
    blobs_without_size,
    parse_raw_tree,
    sized_trees,
)
from sync_jobs.core.plan import Transport, git_fetch_blocker
from sync_jobs.core.tree import FileEntry, FlatTree, TreeItem, blob_sha, build_trees

SUBMODULE_COMMIT = "a" * 40


def flat(files: dict[str, tuple[str, bytes]]) -> FlatTree:
    """Files as a flat tree; a ``160000`` entry's bytes are its commit SHA."""
    result = {}
    for path, (mode, content) in files.items():
        if mode == "160000":
            result[path] = FileEntry(mode, content.decode(), None)
        else:
            result[path] = FileEntry(mode, blob_sha(content), len(content))
    return result


def raw(trees: dict[str, list[TreeItem]]) -> dict[str, list[tuple[str, str, str]]]:
    return {sha: [(i[0], i[1], i[3]) for i in items] for sha, items in trees.items()}


def pack_between(
    old: FlatTree,
    new: FlatTree,
    contents: dict[str, bytes],
    *,
    without: frozenset[str] | set[str] = frozenset(),
) -> tuple[str, str, dict[str, list[TreeItem]], PackContents]:
    """What upload-pack sends for ``want new``, ``have old``: trees and blobs of the new
    commit the old one does not reach (less the tree SHAs in ``without``)."""
    old_root, old_trees = build_trees(old)
    new_root, new_trees = build_trees(new)
    old_blobs = {e.sha for e in old.values()}
    pack = PackContents(
        commit_trees={"c" * 40: new_root},
        trees={
            sha: t for sha, t in raw(new_trees).items() if sha not in old_trees.keys() | without
        },
        blob_sizes={
            e.sha: e.size or 0
            for e in new.values()
            if e.has_blob and e.sha not in old_blobs and e.sha in contents
        },
    )
    return old_root, new_root, old_trees, pack


def trees_outside(
    walk: MerkleWalk,
    pack_trees: Mapping[str, list[TreeItem]],
    stored: Callable[[set[str]], Mapping[str, list[TreeItem]]],
) -> set[str]:
    """Advance ``walk`` from the pack, then the store, as TreeSource does; return what it
    still wants (what the REST API would be asked for)."""
    while not walk.done:
        wanted = walk.wanted()
        found = {sha: pack_trees[sha] for sha in wanted if sha in pack_trees}
        found.update(stored(wanted - found.keys()))
        if not found:
            return wanted
        walk.provide(found)
    return set()


def walk_delta(
    old: FlatTree, new: FlatTree, *, without: frozenset[str] | set[str] = frozenset()
) -> set[str]:
    """Run the walk over pack + stored old trees; assert its delta is the flat diff;
    return the trees it had to get from elsewhere."""
    contents = {e.sha: b"" for e in new.values()}
    old_root, new_root, stored, pack = pack_between(old, new, contents, without=without)
    known = {e.sha: e.size for e in old.values() if e.size is not None}
    sized = sized_trees(pack, known)
    walk = MerkleWalk(old_root, new_root)
    outside = trees_outside(
        walk, sized.trees, lambda shas: {s: stored[s] for s in shas & stored.keys()}
    )
    fetched_elsewhere = set(outside)
    _, all_new = build_trees(new)
    while outside:  # what the REST fallback would answer
        walk.provide({sha: all_new[sha] for sha in outside})
        outside = trees_outside(walk, sized.trees, lambda shas: {})
        fetched_elsewhere |= outside
    assert walk.delta() == diff_flat(old, new)
    return fetched_elsewhere | set(sized.unsized)


BASE = {
    "README.md": ("100644", b"hello\n"),
    "src/app.py": ("100644", b"print(1)\n"),
    "src/lib/util.py": ("100644", b"x = 1\n"),
    "docs/guide.md": ("100644", b"guide\n"),
    "vendor/module": ("160000", SUBMODULE_COMMIT.encode()),
}


def test_raw_tree_entries_spell_modes_as_github() -> None:
    tree = Tree()
    tree.add(b"a", 0o100644, ObjectID(blob_sha(b"a").encode()))
    tree.add(b"d", 0o40000, Tree().id)
    tree.add(b"m", 0o160000, ObjectID(SUBMODULE_COMMIT.encode()))
    tree.add(b"l", 0o120000, ObjectID(blob_sha(b"a").encode()))
    assert [(n, m) for n, m, _s in parse_raw_tree(tree.as_raw_string())] == [
        ("a", "100644"),
        ("d", "040000"),
        ("l", "120000"),
        ("m", "160000"),
    ]


def test_an_edit_deep_down_is_walked_from_the_pack_alone() -> None:
    new = {**BASE, "src/lib/util.py": ("100644", b"x = 2\n")}
    assert walk_delta(flat(BASE), flat(new)) == set()


def test_mode_change_symlink_and_submodule() -> None:
    new = {
        **BASE,
        "src/app.py": ("100755", b"print(1)\n"),
        "link": ("120000", b"README.md"),
        "vendor/module": ("160000", b"b" * 40),
    }
    old, new_flat = flat(BASE), flat(new)
    assert walk_delta(old, new_flat) == set()
    _, _, _, pack = pack_between(old, new_flat, {})
    # The gitlink names a commit of another repository: never a blob to size or fetch.
    assert "b" * 40 not in blobs_without_size(pack) | pack.blob_sizes.keys()


def test_revert_to_an_old_tree_fetches_only_what_neither_side_has() -> None:
    """The new root names a ``src`` tree an older commit had: the pack lacks it (the
    ``have`` reaches it) and the store lacks it (never synced): it is fetched elsewhere."""
    older = {**BASE, "src/app.py": ("100644", b"print(0)\n")}
    _, older_trees = build_trees(flat(older))
    old_src = next(
        sha for sha, items in older_trees.items() if any(i[0] == "app.py" for i in items)
    )
    outside = walk_delta(flat(BASE), flat(older), without={old_src})
    assert outside == {old_src}


def test_moved_directory_reuses_the_stored_subtree() -> None:
    moved = {("lib/" + p[4:] if p.startswith("src/") else p): e for p, e in BASE.items()}
    old, new = flat(BASE), flat(moved)
    assert walk_delta(old, new) == set()
    delta = diff_flat(old, new)
    assert {r.new_path for r in delta.renames} == {"lib/app.py", "lib/lib/util.py"}


def test_a_blob_of_unknown_size_sends_its_tree_to_the_rest_listing() -> None:
    new = {**BASE, "docs/big.bin": ("100644", b"\0" * 5000)}
    old_flat, new_flat = flat(BASE), flat(new)
    _, _, _, pack = pack_between(old_flat, new_flat, {})  # the filter left the blob out
    big = new_flat["docs/big.bin"].sha
    assert blobs_without_size(pack) >= {big}
    sized = sized_trees(pack, {e.sha: e.size for e in old_flat.values() if e.size is not None})
    _, trees = build_trees(new_flat)
    docs = next(sha for sha, items in trees.items() if any(i[0] == "big.bin" for i in items))
    assert docs in sized.unsized and docs not in sized.trees
    # Every sized tree carries exactly the sizes the stored trees would.
    for sha, items in sized.trees.items():
        assert items == trees[sha]


def test_transport_choice() -> None:
    assert git_fetch_blocker(Transport.REST, base_commit="c", any_blob_stored=True)
    assert git_fetch_blocker(Transport.AUTO, base_commit="c", any_blob_stored=True) is None
    assert git_fetch_blocker(Transport.AUTO, base_commit=None, any_blob_stored=False) is None
    assert git_fetch_blocker(Transport.AUTO, base_commit=None, any_blob_stored=True)
    assert git_fetch_blocker(Transport.GIT, base_commit=None, any_blob_stored=True) is None

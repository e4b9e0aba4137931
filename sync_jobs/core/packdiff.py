"""The objects of a git pack, turned into what the Merkle walk and the fetch phase need.

A fetch over git's own protocol (``want <head>``, ``have <last synced commit>``)
brings exactly the objects reachable from the new head and not from the old one: the
new commit, every tree object that changed, and every new blob (below the
``blob:limit`` filter). That is the same set of trees the REST Merkle walk would read
on the new side, so the walk (:class:`~sync_jobs.core.merkle.MerkleWalk`) runs
unchanged over them and produces the identical :class:`~sync_jobs.core.diff.Delta`:

- a subtree whose SHA equals the stored one at that path is skipped (never opened);
- a subtree in the pack is opened from the pack;
- a subtree in neither (a revert to a tree the old commit's history has but this
  project never stored, a directory moved back) is read from GitHub's REST API like
  any other wanted tree (:class:`sync_jobs.trees.TreeSource` looks in the pack's
  trees, then the store, then asks GitHub).

Git tree objects carry no sizes, but stored trees (GitTree rows) and file versions do.
A blob's size comes from the pack when the blob is in it, else from the sizes already
known for the repository (the Blob table: every blob of every synced state is there).
A tree with a blob of unknown size (a blob the ``blob:limit`` filter left out, or one
from an unsynced part of the old history) is not used from the pack: the REST tree
listing, which has sizes, answers for it. Submodule entries (``160000``) point at a
commit of another repository; they have no blob, no size and nothing to fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dulwich.objects import Tree

from sync_jobs.core.tree import EntryKind, TreeItem, git_type, kind_of, normal_mode

RawEntry = tuple[str, str, str]
"""``(name, mode, sha)`` of one entry of a git tree object, as the pack holds it."""

RawTree = list[RawEntry]


def parse_raw_tree(data: bytes) -> RawTree:
    """One tree object's bytes (as in a pack) → its entries, modes spelt as GitHub does."""
    tree = Tree.from_raw_string(Tree.type_num, data)
    assert isinstance(tree, Tree)
    entries = []
    for name, mode, sha in tree.iteritems():
        entries.append(
            (
                name.decode("utf-8", "surrogateescape"),
                normal_mode(f"{mode:06o}"),
                sha.decode("ascii"),
            )
        )
    return sorted(entries)


@dataclass
class PackContents:
    """What one fetched pack held, by SHA (blob contents are not kept here)."""

    commit_trees: dict[str, str] = field(default_factory=dict)
    """commit SHA → its root tree SHA."""
    trees: dict[str, RawTree] = field(default_factory=dict)
    blob_sizes: dict[str, int] = field(default_factory=dict)


def _has_blob(mode: str) -> bool:
    return kind_of(mode) in (EntryKind.FILE, EntryKind.SYMLINK)


def blobs_without_size(pack: PackContents) -> set[str]:
    """Blob SHAs that trees of the pack name but the pack does not hold (sizes to look up)."""
    return {
        sha
        for entries in pack.trees.values()
        for _name, mode, sha in entries
        if _has_blob(mode) and sha not in pack.blob_sizes
    }


@dataclass(frozen=True)
class SizedTrees:
    """Pack trees as stored tree objects, and the ones that could not be sized."""

    trees: dict[str, list[TreeItem]]
    unsized: frozenset[str]


def sized_trees(pack: PackContents, known_sizes: Mapping[str, int]) -> SizedTrees:
    """Every pack tree whose blob sizes are all known, as :data:`TreeItem` lists."""
    trees: dict[str, list[TreeItem]] = {}
    unsized = set()
    for tree_sha, entries in pack.trees.items():
        items: list[TreeItem] = []
        for name, mode, sha in entries:
            size: int | None = None
            if _has_blob(mode):
                size = pack.blob_sizes.get(sha, known_sizes.get(sha))
                if size is None:
                    unsized.add(tree_sha)
                    break
            items.append(TreeItem(name, mode, git_type(mode), sha, size))
        else:
            trees[tree_sha] = items
    return SizedTrees(trees, frozenset(unsized))

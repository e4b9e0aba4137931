"""Git tree entries as plain data, and the git object hashing a sync needs.

A *flat tree* maps every non-tree path of a commit (regular files, symlinks,
submodules) to its :class:`FileEntry`; that is the shape ``git ls-tree -r`` prints and
the shape stored as RepositoryFile rows. A *tree object* is one directory level, a
list of :class:`TreeItem` ``[name, mode, type, sha, size]`` exactly as stored in
GitTree rows. Hashing goes through dulwich so the bytes hashed are git's own format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import NamedTuple

from dulwich.objects import Blob, ObjectID, Tree, object_header

MODE_FILE = "100644"
MODE_EXECUTABLE = "100755"
MODE_SYMLINK = "120000"
MODE_SUBMODULE = "160000"
MODE_TREE = "040000"


class EntryKind(StrEnum):
    """What a tree entry is; a change of kind is a *type change* in git's terms."""

    FILE = "file"
    SYMLINK = "symlink"
    SUBMODULE = "submodule"
    TREE = "tree"


def kind_of(mode: str) -> EntryKind:
    """Classify a git mode; regular and executable files are both FILE (a mode change)."""
    if mode in (MODE_FILE, MODE_EXECUTABLE, "100664"):
        return EntryKind.FILE
    if mode == MODE_SYMLINK:
        return EntryKind.SYMLINK
    if mode == MODE_SUBMODULE:
        return EntryKind.SUBMODULE
    if mode.lstrip("0") == "40000":
        return EntryKind.TREE
    raise ValueError(f"unknown git mode {mode!r}")


def normal_mode(mode: str) -> str:
    """GitHub prints trees as ``040000``, git as ``40000``; keep one spelling."""
    return MODE_TREE if mode.lstrip("0") == "40000" else mode


class FileEntry(NamedTuple):
    """One non-tree path of a commit. ``size`` is None for submodules (no blob)."""

    mode: str
    sha: str
    size: int | None = None

    @property
    def kind(self) -> EntryKind:
        return kind_of(self.mode)

    @property
    def has_blob(self) -> bool:
        """Submodule entries point at a commit in another repository, not a blob."""
        return self.kind in (EntryKind.FILE, EntryKind.SYMLINK)


class TreeItem(NamedTuple):
    """One entry of one tree object, in the order GitTree rows store it (a JSON list);
    ``type`` is GitHub's (``blob``, ``tree``, ``commit``), ``size`` None for non-blobs."""

    name: str
    mode: str
    type: str
    sha: str
    size: int | None


FlatTree = dict[str, FileEntry]


def git_type(mode: str) -> str:
    """The object type a mode points at, as GitHub's tree API spells it."""
    kind = kind_of(mode)
    if kind is EntryKind.TREE:
        return "tree"
    if kind is EntryKind.SUBMODULE:
        return "commit"
    return "blob"


def join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def blob_sha(content: bytes) -> str:
    """The git blob SHA of ``content``."""
    return Blob.from_string(content).id.decode("ascii")


class BlobHasher:
    """Incremental git blob SHA for content too large to hold at once (size known up front)."""

    def __init__(self, size: int) -> None:
        self._hash = hashlib.sha1(object_header(Blob.type_num, size), usedforsecurity=False)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def tree_sha(items: Iterable[TreeItem]) -> str:
    """The git tree SHA of one directory level (dulwich sorts entries git's way)."""
    tree = Tree()
    for name, mode, _type, sha, _size in items:
        tree.add(
            name.encode("utf-8", "surrogateescape"), int(mode, 8), ObjectID(sha.encode("ascii"))
        )
    return tree.id.decode("ascii")


def build_trees(flat: Mapping[str, FileEntry]) -> tuple[str, dict[str, list[TreeItem]]]:
    """Build every tree object of a flat listing; return the root SHA and trees by SHA.

    This is how a tarball's contents are checked against the commit: if the computed
    root equals the commit's tree SHA, every path, mode and blob SHA is proven.
    """
    children: dict[str, dict[str, TreeItem]] = {"": {}}
    for path, entry in flat.items():
        parts = path.split("/")
        for depth in range(1, len(parts)):
            children.setdefault("/".join(parts[:depth]), {})
        name = parts[-1]
        children["/".join(parts[:-1])][name] = TreeItem(
            name,
            entry.mode,
            git_type(entry.mode),
            entry.sha,
            entry.size,
        )
    trees: dict[str, list[TreeItem]] = {}
    # Deepest directories first, so each parent has its children's SHAs when hashed.
    for directory in sorted(children, key=lambda d: d.count("/") + bool(d), reverse=True):
        listing = sorted(children[directory].values())
        sha = tree_sha(listing)
        trees[sha] = listing
        if directory:
            parent, _, name = directory.rpartition("/")
            children[parent][name] = TreeItem(name, MODE_TREE, "tree", sha, None)
        else:
            return sha, trees
    raise AssertionError("unreachable: the root is always last")


def flatten(root: str, trees: Mapping[str, list[TreeItem]], prefix: str = "") -> FlatTree:
    """Expand a tree object (and its subtrees, all of which must be in ``trees``)."""
    flat: FlatTree = {}
    stack = [(prefix, root)]
    while stack:
        directory, sha = stack.pop()
        for name, mode, _type, item_sha, size in trees[sha]:
            path = join(directory, name)
            if kind_of(mode) is EntryKind.TREE:
                stack.append((path, item_sha))
            else:
                flat[path] = FileEntry(mode, item_sha, size)
    return flat


def trees_from_listing(
    root: str, listing: Iterable[tuple[str, str, str, int | None]]
) -> dict[str, list[TreeItem]]:
    """Regroup a complete recursive listing ``(path, mode, sha, size)`` into tree objects.

    GitHub's ``recursive=1`` tree answer names every subtree with its SHA, so one call
    yields every tree object of the commit (when it is not truncated). Identical
    subtrees at several paths collapse into one tree object, as in git.
    """
    rows = [(path, normal_mode(mode), sha, size) for path, mode, sha, size in listing]
    dir_sha: dict[str, str] = {"": root}
    for path, mode, sha, _size in rows:
        if mode == MODE_TREE:
            dir_sha[path] = sha
    trees: dict[str, dict[str, TreeItem]] = {sha: {} for sha in dir_sha.values()}
    for path, mode, sha, size in rows:
        parent, _, name = path.rpartition("/")
        trees[dir_sha[parent]][name] = TreeItem(name, mode, git_type(mode), sha, size)
    return {sha: sorted(items.values()) for sha, items in trees.items()}

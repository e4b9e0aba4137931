"""Sync planning decisions as pure functions: delta or full, tree levels or recursive
listings, blobs or tarball, text or not.

A delta sync is a guarded optimisation (zoekt's ``prepareDeltaBuild``): when a
precondition fails, :func:`delta_blocker` returns the reason in words; the pipeline
logs it and runs a full sync, which ends in the same state, only with more work.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from sync_jobs.core.content import DecodedText, decode_text, is_binary
from sync_jobs.core.tree import MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK


@dataclass(frozen=True)
class DeltaBase:
    """What the pipeline knows about the project's current state when it starts."""

    current_sync_id: int | None
    current_tree_sha: str | None
    current_tree_stored: bool
    full_requested: bool = False


def delta_blocker(base: DeltaBase) -> str | None:
    """The reason a delta sync is not possible, or None when it is."""
    if base.full_requested:
        return "a full sync was requested"
    if base.current_sync_id is None:
        return "the project has no successful sync yet"
    if base.current_tree_sha is None:
        return f"sync {base.current_sync_id} recorded no tree SHA"
    if not base.current_tree_stored:
        return f"tree {base.current_tree_sha} of sync {base.current_sync_id} is not stored"
    return None


class FetchStrategy(StrEnum):
    """How the content of the needed blobs is fetched."""

    NOTHING = "nothing"
    BLOBS = "blobs"  # one git/blobs call per blob, several at a time
    TARBALL = "tarball"  # one archive download of the whole commit


@dataclass(frozen=True)
class FetchCosts:
    """Measured costs (seconds) that decide between blob calls and one tarball."""

    blob_call_seconds: float
    concurrency: int
    tarball_fixed_seconds: float
    tarball_seconds_per_file: float


def choose_fetch(needed: int, total_files: int, costs: FetchCosts) -> FetchStrategy:
    """Blob calls cost ``needed / concurrency`` round trips; a tarball costs the whole tree.

    A tarball also costs one API call instead of ``needed``, so on a tie it wins.
    """
    if needed == 0:
        return FetchStrategy.NOTHING
    blobs = needed / costs.concurrency * costs.blob_call_seconds
    tarball = costs.tarball_fixed_seconds + total_files * costs.tarball_seconds_per_file
    return FetchStrategy.TARBALL if tarball <= blobs else FetchStrategy.BLOBS


class ContentKind(StrEnum):
    TEXT = "text"  # everything git calls text, in any encoding
    BINARY = "binary"  # git's rule: a NUL byte in the first 8,000 bytes
    OVERSIZED = "oversized"  # larger than SYNC_MAX_BLOB_BYTES


@dataclass(frozen=True)
class BlobContent:
    """What a blob is, and for text its characters and the codec that gives it back."""

    kind: ContentKind
    decoded: DecodedText | None = None

    @property
    def column_text(self) -> str | None:
        """The text a text column can hold exactly, or None.

        A text column holds the decoded characters; a NUL cannot be stored in
        PostgreSQL's ``text`` at all, so text with a NUL after git's first 8,000 bytes
        has none until the blob row has a column for raw bytes.
        """
        if self.decoded is None or "\0" in self.decoded.text:
            return None
        return self.decoded.text


def read_content(data: bytes, *, max_bytes: int) -> BlobContent:
    """Decide whether a blob is text by git's rule, and decode it when it is (see
    :mod:`sync_jobs.core.content` for the rule and the encodings)."""
    if len(data) > max_bytes:
        return BlobContent(ContentKind.OVERSIZED)
    if is_binary(data):
        return BlobContent(ContentKind.BINARY)
    return BlobContent(ContentKind.TEXT, decode_text(data))


def classify_content(data: bytes, *, max_bytes: int) -> tuple[ContentKind, str | None]:
    """The blob's kind and the text its row stores (:attr:`BlobContent.column_text`)."""
    content = read_content(data, max_bytes=max_bytes)
    return content.kind, content.column_text


def tar_member_path(name: str) -> str | None:
    """The repository path of an archive member: GitHub prefixes ``owner-repo-sha/``."""
    _top, sep, rest = name.partition("/")
    return rest.rstrip("/") if sep and rest.strip("/") else None


def tar_member_mode(*, is_symlink: bool, permissions: int) -> str:
    """The git mode git-archive wrote a member from (it writes 0755 for executables)."""
    if is_symlink:
        return MODE_SYMLINK
    return MODE_EXECUTABLE if permissions & 0o111 else MODE_FILE


class TreeFetch(StrEnum):
    """How one tree object the walk wants is read from GitHub."""

    LEVEL = "level"  # ``git/trees/{sha}``: that one directory level
    RECURSIVE = "recursive"  # ``git/trees/{sha}?recursive=1``: the level and all below


@dataclass(frozen=True)
class WantedTree:
    """A tree the walk needs and no store has, with what is known about its size.

    ``known_files`` counts the files below ``path`` in the best picture the sync has
    of that directory (the project's current state for a delta, the tarball for a
    full sync); None when nothing is known (a directory new in this commit).
    """

    sha: str
    path: str
    known_files: int | None


def plan_tree_fetches(
    wanted: Iterable[WantedTree], *, max_files: int, truncated: AbstractSet[str]
) -> dict[str, TreeFetch]:
    """One call per wanted tree: recursive where the subtree is known (or likely) to be
    small, one level where it is big or GitHub already truncated its recursive listing.

    A recursive call costs one call whatever the depth below, where levels cost one
    per changed directory level; it loses only when the listing is big enough to be
    slow to transfer and parse, or truncated (GitHub stops at 100,000 entries / 7 MB),
    which wastes that one call. A directory new in this commit has no known size; it
    is usually small, so it is tried recursively, and ``truncated`` (the SHAs GitHub
    truncated so far in this sync) sends it to levels on the next round.
    """
    plan: dict[str, TreeFetch] = {}
    for tree in wanted:
        if tree.sha in truncated:
            plan[tree.sha] = TreeFetch.LEVEL
        elif tree.known_files is None or tree.known_files <= max_files:
            # Identical subtrees at several paths are one object: recursive wins if any
            # of its paths says so.
            plan[tree.sha] = TreeFetch.RECURSIVE
        else:
            plan.setdefault(tree.sha, TreeFetch.LEVEL)
    return plan


class Transport(StrEnum):
    """How a sync reads GitHub (``SYNC_TRANSPORT``): git's smart HTTP first with the REST
    API as the fallback (``auto``), the REST API only, or git only (its failures are
    retried later instead of falling back; for checking the git path)."""

    AUTO = "auto"
    REST = "rest"
    GIT = "git"


def git_fetch_blocker(
    transport: Transport, *, base_commit: str | None, any_blob_stored: bool
) -> str | None:
    """The reason a sync does not fetch over git, or None when it does.

    Without a last synced commit to send as ``have`` the pack holds every blob of the
    head; that is the right fetch for a repository with nothing stored (like the
    tarball), but a repository whose blobs another project already stored is cheaper
    over the REST listing, which fetches only the missing ones.
    """
    if transport is Transport.REST:
        return "SYNC_TRANSPORT is rest"
    if base_commit is None and any_blob_stored and transport is Transport.AUTO:
        return "no synced commit to negotiate from, and the repository's blobs are stored"
    return None


class PushedHead(NamedTuple):
    """A push's ``before`` and ``after`` commits, as its webhook named them."""

    before: str
    after: str


def pushed_want(pushed: PushedHead | None, *, synced_commit: str | None) -> str | None:
    """The commit a sync may fetch without asking for the branch head: the push's
    ``after``, when the push started from the commit the project is synced to.

    A push that did not start there was delivered late or overtaken by another sync:
    its ``after`` may be behind the branch, so the head is read as for any sync.
    """
    if pushed is None or synced_commit is None or pushed.before != synced_commit:
        return None
    return pushed.after

"""A sync's git path: its new objects as one pack over git's smart HTTP.

The REST path reads a changed tree per call and a blob per call; git's own protocol
answers the same question (what is reachable from the new head and not from the last
synced commit?) in one negotiation (:mod:`sync_jobs.git_http`): ``ls-refs`` for the
branch head, then ``fetch`` with ``want <head>``, ``have <last synced commit>``,
``filter blob:limit=<SYNC_MAX_BLOB_BYTES + 1>`` and ``done``. The pack holds the new
commit, the changed trees and the new blobs no larger than ``SYNC_MAX_BLOB_BYTES``
(larger ones keep SHA and size only, so their content is never downloaded).

Over git the resolve phase needs no REST call: ``ls-refs`` names the head commit and
the pack's commit object its root tree (:func:`head_over_git`); a no-op is one
``ls-refs``. A sync that one push alone asked for, starting from the synced commit,
skips ``ls-refs`` and fetches that push's ``after`` (one request a push,
:func:`~sync_jobs.core.plan.pushed_want`); should that fetch fail (the commit was
force-pushed away and collected), the sync asks for the head with ``ls-refs`` after all.
The diff phase then takes the pack's trees (:func:`objects_over_git`).
Should the git path fail, the branch head is read over REST and the sync runs there.

The pack is spooled to a temporary file (in memory up to :data:`SPOOL_BYTES`),
checked against its trailing checksum, then inflated object by object: blobs go to
the :class:`BlobWriter` as they come, trees and commits are kept (small), so memory
stays bounded whatever the pack's size. Both steps yield progress events while they
run ("receiving 1.2 MiB of objects", then "unpacking 300 of 1,200 objects", at most
every :data:`~sync_jobs.defaults.PROGRESS_MIN_INTERVAL_SECONDS`): dulwich's fetch is one
blocking call that hands the pack to a callback, so it runs on a thread of its own
while the pipeline's generator reports the bytes its spool has counted.

No repository is written anywhere. Trees get their blob sizes from the pack and the
Blob table (:mod:`sync_jobs.core.packdiff`); a tree with a blob of unknown size (one
the filter left out) is left to the REST listing, which has sizes.

Every failure of this path (an HTTP error, a server without protocol v2, a corrupt
pack) is logged once and the sync goes on over REST, in the same run.
Database errors are not caught here: they are the pipeline's retryable errors.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass

from dulwich.errors import ApplyDeltaError, ChecksumMismatch, ObjectFormatException
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Blob, Commit, ShaFile, Tree
from dulwich.pack import PackData, PackInflater, UnresolvedDeltas
from flask import current_app
from sqlalchemy import select

from models import Blob as BlobRow
from models import Project, ProjectSync, SyncStatus, db
from sync_jobs import defaults, metrics
from sync_jobs.connector import BranchHead, GitHubConnector
from sync_jobs.core.packdiff import (
    PackContents,
    SizedTrees,
    blobs_without_size,
    parse_raw_tree,
    sized_trees,
)
from sync_jobs.core.plan import PushedHead, Transport, git_fetch_blocker, pushed_want
from sync_jobs.errors import GitHubUnavailableError
from sync_jobs.fetch import BlobWriter, Ticker, chunks, has_any_blob
from sync_jobs.git_http import (
    GitCredentialsRefusedError,
    GitTransportError,
    download_pack,
    repository_git_url,
)
from sync_jobs.progress import (
    Phase,
    ProgressEvent,
    describe_receiving,
    describe_unpacking,
    pack_progress,
)

log = logging.getLogger(__name__)

PACK_ERRORS = (ApplyDeltaError, ChecksumMismatch, ObjectFormatException, UnresolvedDeltas)
"""dulwich's ways of saying a pack is truncated, corrupt or thin."""

SPOOL_BYTES = 32 * 1024 * 1024
"""A pack up to this size stays in memory while it is read; a larger one goes to a
temporary file (the pack is read twice: checksum, then objects with their deltas)."""

PACK_HEADER_BYTES = 12
"""``PACK``, the version and the object count (4 bytes each, big-endian)."""

DOWNLOAD_POLL_SECONDS = 0.05
"""How often the pipeline looks at a running download's byte count (its events are
throttled by :class:`~sync_jobs.fetch.Ticker`); also how late it notices the end."""


@dataclass(frozen=True)
class GitObjects:
    """What the pack gave a sync: its trees (as GitTree rows would hold them) and the
    blobs it wrote."""

    trees: SizedTrees
    blob_shas: frozenset[str]
    pack_bytes: int


class PackSpool:
    """The pack as it arrives: spooled, its bytes counted and its object count read from
    its header (written by the download's thread, read by the pipeline's)."""

    def __init__(self) -> None:
        self.file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self.received = 0
        self._header = b""

    def write(self, data: bytes) -> int:
        written = self.file.write(data)
        if len(self._header) < PACK_HEADER_BYTES:
            self._header += data[: PACK_HEADER_BYTES - len(self._header)]
        self.received += len(data)
        return written

    @property
    def objects(self) -> int:
        """How many objects the pack holds (0 until its header has arrived)."""
        if len(self._header) < PACK_HEADER_BYTES or not self._header.startswith(b"PACK"):
            return 0
        return int.from_bytes(self._header[8:12], "big")

    def receiving(self) -> ProgressEvent:
        done, total = pack_progress(objects=self.objects, received=self.received)
        message = describe_receiving(self.received)
        return ProgressEvent(Phase.FETCH, done, total, message, bytes=self.received)

    def unpacking(self, unpacked: int, objects: int) -> ProgressEvent:
        done, total = pack_progress(objects=objects, received=self.received, unpacked=unpacked)
        message = describe_unpacking(unpacked, objects)
        return ProgressEvent(Phase.FETCH, done, total, message, bytes=self.received)

    def close(self) -> None:
        self.file.close()


class GitDownload:
    """One sync's fetch over git: what it asks for, and what came of it."""

    def __init__(
        self,
        gh: GitHubConnector,
        transport: Transport,
        *,
        branch: str,
        have: str | None,
        have_tree: str | None,
        want: str | None = None,
    ) -> None:
        self.gh = gh
        self.transport = transport
        self.branch = branch
        self.have = have
        self.have_tree = have_tree
        self.want = want
        self.token = ""
        self.commit: str | None = None
        self.objects: GitObjects | None = None
        self.error: GitTransportError | None = None

    def again(self) -> GitDownload:
        """The same fetch anew (it will send the connector's token of then)."""
        return GitDownload(
            self.gh,
            self.transport,
            branch=self.branch,
            have=self.have,
            have_tree=self.have_tree,
            want=self.want,
        )

    def read(self, writer: BlobWriter) -> Generator[ProgressEvent, None, BranchHead]:
        """Download the pack; store its blobs; the head with its tree. Yields the
        download's progress while the pack arrives and while it is unpacked."""
        self.token = self.gh.installation_token
        if self.want is not None:
            try:
                return (yield from self._read(writer, known_head=self.want))
            except GitCredentialsRefusedError:
                raise
            except GitTransportError as exc:
                log.info(
                    "pushed head %s of %s not fetched (%s); asking for the branch head",
                    self.want[:12],
                    self.gh.full_name,
                    exc,
                )
                self.want = None
        return (yield from self._read(writer, known_head=None))

    def _read(
        self, writer: BlobWriter, *, known_head: str | None
    ) -> Generator[ProgressEvent, None, BranchHead]:
        config = current_app.config
        spool = PackSpool()

        def download() -> str:
            return download_pack(
                url=repository_git_url(config["GITHUB_API_URL"], self.gh.full_name),
                token=self.token,
                branch=self.branch,
                known_head=known_head,
                have=self.have,
                write=spool.write,
                stats=self.gh.stats,
                timeout=config.get("SYNC_HTTP_TIMEOUT_SECONDS", defaults.HTTP_TIMEOUT_SECONDS),
                blob_limit=config["SYNC_MAX_BLOB_BYTES"] + 1,
            )

        try:
            self.commit = yield from _receive(download, spool)
            if self.commit == self.have and self.have_tree is not None:
                return BranchHead(self.commit, self.have_tree)  # nothing new: no pack
            try:
                self.objects, tree = yield from _objects(spool, self.commit, writer)
            except GitTransportError:
                # A head the ``have`` reaches (the branch reset to an older commit): git
                # sends nothing for it. If a sync reached that commit before, its trees
                # are stored and the walk needs nothing from GitHub.
                known = synced_tree(writer.repository_id, self.commit)
                if known is None:
                    raise
                self.objects = GitObjects(SizedTrees({}, frozenset()), frozenset(), 0)
                return BranchHead(self.commit, known)
            return BranchHead(self.commit, tree)
        finally:
            spool.close()


def _receive(download: Callable[[], str], spool: PackSpool) -> Generator[ProgressEvent, None, str]:
    """Run the blocking download on a thread; report the spool's bytes as they arrive."""
    outcome: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(download())
        except BaseException as exc:  # re-raised in the pipeline's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="git-pack-download", daemon=True)
    thread.start()
    ticker: Ticker | None = None  # started by the first bytes, which are told at once
    while thread.is_alive():
        thread.join(DOWNLOAD_POLL_SECONDS)
        if not (thread.is_alive() and spool.received):
            continue
        if ticker is None or ticker.due():
            ticker = ticker or Ticker()
            yield spool.receiving()
    if failure:
        raise failure[0]
    if spool.received:
        yield spool.receiving()
    return outcome[0]


def start_git_fetch(
    gh: GitHubConnector, project: Project, *, pushed: PushedHead | None = None
) -> GitDownload | None:
    """The sync's fetch over git when ``SYNC_TRANSPORT`` and the project allow it
    (:func:`~sync_jobs.core.plan.git_fetch_blocker`); None: the REST path only. It
    fetches ``pushed.after`` without ``ls-refs`` when
    :func:`~sync_jobs.core.plan.pushed_want` allows.

    The ``have`` is the project's current synced commit as read now; the pipeline
    reads it again after the branch head, and should another sync have moved it
    meanwhile, the pack is only larger than needed (and the walk still exact: what it
    lacks is stored or read over REST).
    """
    transport = Transport(current_app.config.get("SYNC_TRANSPORT", Transport.AUTO))
    current = (
        db.session.get(ProjectSync, project.current_sync_id) if project.current_sync_id else None
    )
    reason = git_fetch_blocker(
        transport,
        base_commit=current.head_commit_sha if current else None,
        any_blob_stored=has_any_blob(project.repository_id),
    )
    if reason is not None:
        log.debug("not fetching %s over git: %s", gh.full_name, reason)
        return None
    have = current.head_commit_sha if current else None
    return GitDownload(
        gh,
        transport,
        branch=project.branch,
        have=have,
        have_tree=current.head_tree_sha if current else None,
        want=pushed_want(pushed, synced_commit=have),
    )


def head_over_git(
    download: GitDownload | None, repository_id: int
) -> Generator[ProgressEvent, None, BranchHead | None]:
    """The branch head as ``ls-refs`` named it, with its tree from the pack's commit (the
    pack's blobs are stored on the way); None when it must be read over REST. Yields
    the download's progress."""
    if download is None:
        return None
    writer = BlobWriter(repository_id, max_bytes=current_app.config["SYNC_MAX_BLOB_BYTES"])
    try:
        return (yield from download.read(writer))
    except GitTransportError as exc:
        download.error = exc
        return None


def objects_over_git(
    gh: GitHubConnector, writer: BlobWriter, head: BranchHead, download: GitDownload | None
) -> Generator[ProgressEvent, None, GitObjects | None]:
    """The pack's objects for ``head``, or None when the REST path must run.

    A failure is logged once (a warning with the reason) and the sync goes on over
    REST; with ``SYNC_TRANSPORT=git`` it is raised as retryable instead.
    """
    if download is None:
        return None
    yield ProgressEvent(Phase.FETCH, 0, 0, f"fetching {head.commit_sha[:12]} over git")
    try:
        if isinstance(download.error, GitCredentialsRefusedError):
            if gh.installation_token == download.token:
                raise download.error
            # The REST read renewed a revoked or expired token meanwhile: once more.
            download = download.again()
            yield from download.read(writer)
        if download.error is not None:
            raise download.error
        if download.objects is None or download.commit != head.commit_sha:
            raise GitTransportError(f"no pack for {head.commit_sha} (branch {download.commit})")
    except GitTransportError as exc:
        if download.transport is Transport.GIT:
            raise GitHubUnavailableError(f"git fetch failed: {exc}") from exc
        log.warning("git fetch of %s failed, syncing over the REST API: %s", gh.full_name, exc)
        metrics.record_git_fallback(error=type(exc).__name__)
        return None
    objects = download.objects
    count, trees = len(objects.blob_shas), len(objects.trees.trees)
    yield ProgressEvent(Phase.FETCH, count, count, f"{count:,} files, {trees:,} trees over git")
    return objects


def _objects(
    spool: PackSpool, commit: str, writer: BlobWriter
) -> Generator[ProgressEvent, None, tuple[GitObjects, str]]:
    size = spool.file.tell()
    if size == 0:
        raise GitTransportError(f"the server sent no pack for {commit}")
    spool.file.seek(0)
    try:
        contents = yield from _read_pack(spool, size, writer)
    except (zlib.error, KeyError, ValueError, AssertionError, *PACK_ERRORS) as exc:
        raise GitTransportError(f"the pack of {commit} is unusable: {exc!r}") from exc
    tree = contents.commit_trees.get(commit)
    if tree is None:
        raise GitTransportError(f"the pack lacks commit {commit}")
    known = known_blob_sizes(writer.repository_id, blobs_without_size(contents))
    return GitObjects(sized_trees(contents, known), frozenset(contents.blob_sizes), size), tree


def _read_pack(
    spool: PackSpool, size: int, writer: BlobWriter
) -> Generator[ProgressEvent, None, PackContents]:
    data = PackData.from_file(spool.file, DEFAULT_OBJECT_FORMAT, size)
    data.check()  # the trailing SHA-1: a truncated or corrupt pack stops here
    objects = len(data)
    contents = PackContents()
    ticker = Ticker()
    with writer.writing():
        for unpacked, obj in enumerate(PackInflater.for_pack_data(data), start=1):
            _take(obj, contents, writer)
            if ticker.due():
                yield spool.unpacking(unpacked, objects)
    yield spool.unpacking(objects, objects)
    return contents


def _take(obj: ShaFile, contents: PackContents, writer: BlobWriter) -> None:
    sha = obj.id.decode("ascii")
    if isinstance(obj, Blob):
        content = obj.as_raw_string()
        size = len(content)
        contents.blob_sizes[sha] = size
        writer.add(sha, content if size <= writer.max_bytes else None, size)
    elif isinstance(obj, Tree):
        contents.trees[sha] = parse_raw_tree(obj.as_raw_string())
    elif isinstance(obj, Commit):
        contents.commit_trees[sha] = obj.tree.decode("ascii")


def synced_tree(repository_id: int, commit: str) -> str | None:
    """The root tree of ``commit`` as a succeeded sync of the repository recorded it."""
    return db.session.scalar(
        select(ProjectSync.head_tree_sha)
        .join(Project, ProjectSync.project_id == Project.id)
        .where(
            Project.repository_id == repository_id,
            ProjectSync.head_commit_sha == commit,
            ProjectSync.status == SyncStatus.SUCCEEDED,
            ProjectSync.head_tree_sha.is_not(None),
        )
        .limit(1)
    )


def known_blob_sizes(repository_id: int, shas: set[str]) -> dict[str, int]:
    """Sizes of blobs the repository already stores (every synced state's blobs are)."""
    found: dict[str, int] = {}
    for batch in chunks(sorted(shas)):
        rows = db.session.execute(
            select(BlobRow.sha, BlobRow.size).where(
                BlobRow.repository_id == repository_id, BlobRow.sha.in_(batch)
            )
        )
        found.update({sha: size for sha, size in rows})
    return found

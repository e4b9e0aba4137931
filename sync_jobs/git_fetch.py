"""Fetch a sync's new objects over git's smart HTTP protocol (v2), as one pack.

The REST path reads a changed tree per call and a blob per call; git's own protocol
answers the same question (what is reachable from the new head and not from the last
synced commit?) in one negotiation: ``ls-refs`` for the branch head, then ``fetch``
with ``want <head>``, ``have <last synced commit>``, ``filter blob:limit=<n>`` and
``done``. What comes back is a pack of the new commit, the changed trees and the new
blobs no larger than ``SYNC_MAX_BLOB_BYTES`` (larger ones keep SHA and size only, so
their content is never downloaded). No thin pack is asked for, so every delta base is
in the pack itself and nothing has to be read from a local repository.

dulwich's HTTP client speaks protocol v2 with ``filter`` (``fetch_pack`` with
``protocol_version=2``, ``filter_spec``); only its transport is replaced here, by
httpx, so the requests carry the installation token (``x-access-token`` Basic auth),
the sync's timeout and are counted in the sync's :class:`CallStats` like every REST
call. The pack is spooled to a temporary file (in memory up to
:data:`~sync_jobs.defaults.GIT_PACK_SPOOL_BYTES`), checked against its trailing
checksum, then inflated object by object: blobs go to the :class:`BlobWriter` as they
come, trees and commits are kept (small), so memory stays bounded whatever the pack's
size. No repository is written anywhere.

Every failure of this path (an HTTP error, a server without protocol v2, a corrupt
pack, a branch that moved between the REST read and ``ls-refs``) raises
:class:`GitTransportError`; the pipeline then runs the REST path in the same sync.
Database errors are not caught here: they are the pipeline's retryable errors.
"""

from __future__ import annotations

import logging
import tempfile
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
from dulwich.client import AbstractHttpGitClient, read_pkt_refs_v2
from dulwich.errors import GitProtocolError, HangupException
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
from dulwich.pack import PackData, PackInflater
from dulwich.protocol import Protocol, pkt_line, pkt_seq
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from models import Blob as BlobRow
from models import db
from sync_jobs import defaults
from sync_jobs.connector import BranchHead, CallStats, GitHubConnector
from sync_jobs.core.packdiff import (
    PackContents,
    SizedTrees,
    blobs_without_size,
    parse_raw_tree,
    sized_trees,
)
from sync_jobs.core.plan import Transport, git_fetch_blocker
from sync_jobs.errors import GitHubUnavailableError
from sync_jobs.fetch import BlobWriter, chunks, has_any_blob
from sync_jobs.progress import Phase, ProgressEvent

log = logging.getLogger(__name__)

SPOOL_BYTES = 32 * 1024 * 1024
"""A pack up to this size stays in memory while it is read; a larger one goes to a
temporary file (the pack is read twice: checksum, then objects with their deltas)."""


ASSUMED_CAPABILITIES = {b"ls-refs", b"fetch=shallow filter", b"object-format=sha1"}
"""What a protocol v2 server of GitHub's advertises and this client uses."""


class GitTransportError(Exception):
    """The git path could not give this sync its objects; the REST path will."""


def repository_git_url(api_url: str, full_name: str) -> str:
    """Where git fetches a repository, from the REST API root the App is configured
    with: ``https://github.com/o/r.git`` for api.github.com, ``https://HOST/o/r.git``
    for Enterprise (``https://HOST/api/v3``) and the emulator (same origin)."""
    parts = urlsplit(api_url.rstrip("/"))
    if parts.netloc == "api.github.com":
        return f"{parts.scheme}://github.com/{full_name}.git"
    return f"{parts.scheme}://{parts.netloc}{parts.path.removesuffix('/api/v3')}/{full_name}.git"


@dataclass(frozen=True)
class GitObjects:
    """What the pack gave a sync: its trees (as GitTree rows would hold them) and the
    blobs it wrote."""

    trees: SizedTrees
    blob_shas: frozenset[str]
    pack_bytes: int


class _Response:
    """The little of urllib3's response that dulwich's HTTP client reads."""

    def __init__(self, response: httpx.Response, requested: str) -> None:
        self._response = response
        self.status = response.status_code
        self.content_type = response.headers.get("Content-Type")
        self.redirect_location = str(response.url) if str(response.url) != requested else ""
        self._chunks = response.iter_bytes(1 << 16)
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        """Exactly ``size`` bytes unless the body ends first (dulwich's pkt-line reader
        relies on whole reads)."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer.extend(chunk)
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def close(self) -> None:
        self._response.close()


class _HttpxGitClient(AbstractHttpGitClient):
    """dulwich's smart HTTP client over one httpx client, every request counted."""

    def __init__(self, url: str, *, token: str, timeout: float, stats: CallStats) -> None:
        super().__init__(url, thin_packs=False)
        self._http = httpx.Client(
            auth=httpx.BasicAuth("x-access-token", token),
            timeout=timeout,
            follow_redirects=True,
            headers={"User-Agent": "project-sync"},
        )
        self._stats = stats

    def close(self) -> None:
        self._http.close()

    def _discover_references(
        self,
        service: bytes,
        base_url: str,
        protocol_version: int | None = None,
        ref_prefix: Sequence[bytes] | None = None,
    ) -> tuple[dict[Any, Any], set[bytes], str, dict[Any, Any], dict[Any, Any]]:
        """``ls-refs`` in one POST, without the capability advertisement (``GET
        info/refs``) dulwich and git read first: protocol v2 over HTTP is stateless, so
        a server that speaks it answers a command at once, and a round trip is saved.
        The capabilities this sync relies on (``fetch`` with ``shallow`` and
        ``filter``) are assumed; a server without them refuses the fetch, and the
        sync goes on over REST."""
        self.protocol_version = 2
        prefixes = [b"ref-prefix " + prefix for prefix in ref_prefix or ()]
        body = pkt_line(b"command=ls-refs\n") + b"0001" + pkt_seq(*prefixes)
        response, read = self._smart_request(service.decode("ascii"), base_url, body)
        try:
            refs, symrefs, peeled = read_pkt_refs_v2(
                Protocol(read, lambda data: None).read_pkt_seq()
            )
        finally:
            response.close()
        return refs, ASSUMED_CAPABILITIES, base_url, symrefs, peeled

    def _http_request(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        data: bytes | Iterator[bytes] | None = None,
        raise_for_status: bool = True,
    ) -> tuple[Any, Callable[[int], bytes]]:
        request = self._http.build_request(
            "GET" if data is None else "POST", url, headers=headers, content=data
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            self._stats.add(1, 0)
            raise GitTransportError(f"git {request.method} {urlsplit(url).path}: {exc!r}") from exc
        self._stats.add(1 + len(response.history), 0)
        if raise_for_status and response.status_code != 200:
            response.close()
            raise GitTransportError(
                f"git {request.method} {urlsplit(url).path} answered {response.status_code}"
            )
        wrapped = _Response(response, url)
        return wrapped, self._counted(wrapped)

    def _counted(self, response: _Response) -> Callable[[int], bytes]:
        def read(size: int = -1) -> bytes:
            data = response.read(size)
            self._stats.add(0, len(data))
            return data

        return read


class _Haves:
    """dulwich's graph walker: the one commit this side already has, then nothing."""

    def __init__(self, have: str | None) -> None:
        self._haves = [ObjectID(have.encode("ascii"))] if have else []
        self.shallow: set[bytes] = set()

    def __next__(self) -> bytes | None:
        return self._haves.pop() if self._haves else None

    def ack(self, sha: bytes) -> None:
        pass

    def nak(self) -> None:
        pass


def objects_over_git(
    gh: GitHubConnector, writer: BlobWriter, branch: str, head: BranchHead, have: str | None
) -> Generator[ProgressEvent, None, GitObjects | None]:
    """The pipeline's git path, when ``SYNC_TRANSPORT`` and the sync allow it (see
    :func:`~sync_jobs.core.plan.git_fetch_blocker`); None: the REST path runs."""
    config = current_app.config
    transport = Transport(config.get("SYNC_TRANSPORT", Transport.AUTO))
    reason = git_fetch_blocker(
        transport, base_commit=have, any_blob_stored=has_any_blob(writer.repository_id)
    )
    if reason is not None:
        log.debug("not fetching %s over git: %s", gh.full_name, reason)
        return None
    return (
        yield from fetch_over_git(
            gh,
            writer,
            transport=transport,
            api_url=config["GITHUB_API_URL"],
            branch=branch,
            head=head,
            have=have,
            timeout=config.get("SYNC_HTTP_TIMEOUT_SECONDS", defaults.HTTP_TIMEOUT_SECONDS),
        )
    )


def fetch_over_git(
    gh: GitHubConnector,
    writer: BlobWriter,
    *,
    transport: Transport,
    api_url: str,
    branch: str,
    head: BranchHead,
    have: str | None,
    timeout: float,
) -> Generator[ProgressEvent, None, GitObjects | None]:
    """The pipeline's git path: the pack's objects, or None when the REST path must run.

    A failure is logged once (a warning with the reason) and the sync goes on over
    REST; with ``SYNC_TRANSPORT=git`` it is raised as retryable instead.
    """
    yield ProgressEvent(Phase.FETCH, 0, 0, f"fetching {head.commit_sha[:12]} over git")
    try:
        objects = fetch_git_objects(
            url=repository_git_url(api_url, gh.full_name),
            token=gh.installation_token,
            branch=branch,
            head=head,
            have=have,
            writer=writer,
            stats=gh.stats,
            timeout=timeout,
        )
    except GitTransportError as exc:
        if transport is Transport.GIT:
            raise GitHubUnavailableError(f"git fetch failed: {exc}") from exc
        log.warning("git fetch of %s failed, syncing over the REST API: %s", gh.full_name, exc)
        return None
    count = len(objects.blob_shas)
    yield ProgressEvent(
        Phase.FETCH,
        count,
        count,
        f"{count:,} files and {len(objects.trees.trees):,} trees over git",
    )
    return objects


def fetch_git_objects(
    *,
    url: str,
    token: str,
    branch: str,
    head: BranchHead,
    have: str | None,
    writer: BlobWriter,
    stats: CallStats,
    timeout: float,
) -> GitObjects:
    """Fetch ``head`` as one pack; write its blobs; return its trees, sized.

    Raises :class:`GitTransportError` for any failure of the git path.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (closed below)
    try:
        _download_pack(
            url=url,
            token=token,
            branch=branch,
            head=head,
            have=have,
            spool=spool,
            stats=stats,
            timeout=timeout,
            limit=writer.max_bytes + 1,
        )
        size = spool.tell()
        if size == 0:
            raise GitTransportError(f"the server sent no pack for {head.commit_sha}")
        spool.seek(0)
        contents = _read_pack(spool, size, writer)
    except (GitProtocolError, HangupException, zlib.error, KeyError, ValueError) as exc:
        raise GitTransportError(f"git fetch of {head.commit_sha}: {exc!r}") from exc
    except SQLAlchemyError:
        raise
    finally:
        spool.close()
    tree = contents.commit_trees.get(head.commit_sha)
    if tree != head.tree_sha:
        raise GitTransportError(
            f"the pack's commit {head.commit_sha} has tree {tree}, not {head.tree_sha}"
        )
    known = known_blob_sizes(writer.repository_id, blobs_without_size(contents))
    return GitObjects(sized_trees(contents, known), frozenset(contents.blob_sizes), size)


def _download_pack(
    *,
    url: str,
    token: str,
    branch: str,
    head: BranchHead,
    have: str | None,
    spool: IO[bytes],
    stats: CallStats,
    timeout: float,
    limit: int,
) -> None:
    ref = f"refs/heads/{branch}".encode()

    def wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> Sequence[bytes]:
        advertised = refs.get(ref)
        if advertised is None or advertised.decode("ascii") != head.commit_sha:
            raise GitTransportError(
                f"{branch} is {advertised!r} over git, {head.commit_sha} over REST (moved?)"
            )
        return [advertised]

    client = _HttpxGitClient(url, token=token, timeout=timeout, stats=stats)
    try:
        client.fetch_pack(
            "",
            wants,  # type: ignore[arg-type]  # dulwich types refs as Ref/ObjectID
            _Haves(have),  # type: ignore[arg-type]
            spool.write,
            ref_prefix=[ref],
            filter_spec=f"blob:limit={limit}".encode(),
            protocol_version=2,
            # A first fetch needs the head's objects only, not its history. With a
            # ``have`` no depth is sent: upload-pack then ignores the ``have`` (the pack
            # holds every object again), and the commits since the last sync are few.
            depth=None if have else 1,
        )
    finally:
        client.close()
    if client.protocol_version != 2:
        raise GitTransportError(f"the server spoke git protocol v{client.protocol_version}")


def _read_pack(spool: IO[bytes], size: int, writer: BlobWriter) -> PackContents:
    data = PackData.from_file(spool, DEFAULT_OBJECT_FORMAT, size)
    data.check()  # the trailing SHA-1: a truncated or corrupt pack stops here
    contents = PackContents()
    with writer.writing():
        for obj in PackInflater.for_pack_data(data):
            _take(obj, contents, writer)
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

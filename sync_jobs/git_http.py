"""git's smart HTTP protocol v2, as a sync speaks it: ``ls-refs``, then one ``fetch``.

dulwich's HTTP client speaks protocol v2 with ``filter`` (``fetch_pack`` with
``protocol_version=2``, ``filter_spec``); only its transport is replaced here, by
httpx, so the requests carry the installation token (``x-access-token`` Basic auth)
and the sync's timeout, and are counted in the sync's :class:`CallStats` like every
REST call. Two requests a fetch: protocol v2 over HTTP is stateless, so ``ls-refs``
is sent at once, without the capability advertisement (``GET info/refs``) git reads
first. No thin pack is asked for (``thin-pack`` is not sent), so every delta base is
in the pack itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from dulwich.client import AbstractHttpGitClient, read_pkt_refs_v2
from dulwich.objects import ObjectID
from dulwich.protocol import Protocol, pkt_line, pkt_seq

from sync_jobs.connector import CallStats

ASSUMED_CAPABILITIES = {b"ls-refs", b"fetch=shallow filter", b"object-format=sha1"}
"""What a protocol v2 server of GitHub's advertises and this client uses."""


class GitTransportError(Exception):
    """The git path could not give this sync its objects; the REST path will."""


class GitCredentialsRefusedError(GitTransportError):
    """401: the token was not accepted (expired or revoked since it was cached)."""


def repository_git_url(api_url: str, full_name: str) -> str:
    """Where git fetches a repository, from the REST API root the App is configured
    with: ``https://github.com/o/r.git`` for api.github.com, ``https://HOST/o/r.git``
    for Enterprise (``https://HOST/api/v3``) and the emulator (same origin)."""
    parts = urlsplit(api_url.rstrip("/"))
    if parts.netloc == "api.github.com":
        return f"{parts.scheme}://github.com/{full_name}.git"
    return f"{parts.scheme}://{parts.netloc}{parts.path.removesuffix('/api/v3')}/{full_name}.git"


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


class HttpxGitClient(AbstractHttpGitClient):
    """dulwich's smart HTTP client over one httpx client, every request counted."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        timeout: float,
        stats: CallStats,
        known_refs: dict[bytes, bytes] | None = None,
    ) -> None:
        super().__init__(url, thin_packs=False)
        self._known_refs = known_refs
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
        sync goes on over REST. With ``known_refs`` (the caller knows the head) no
        request is sent at all."""
        self.protocol_version = 2
        if self._known_refs is not None:
            return dict(self._known_refs), ASSUMED_CAPABILITIES, base_url, {}, {}
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
            refused = response.status_code == 401
            raise (GitCredentialsRefusedError if refused else GitTransportError)(
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


def download_pack(
    *,
    url: str,
    token: str,
    branch: str,
    have: str | None,
    write: Callable[[bytes], int],
    known_head: str | None = None,
    stats: CallStats,
    timeout: float,
    blob_limit: int,
) -> str:
    """``ls-refs`` for the branch, then ``fetch`` its head, the pack's bytes handed to
    ``write`` as they arrive; return the head. With ``known_head`` there is no
    ``ls-refs``: that commit is fetched (one request).

    Nothing is fetched when the head is ``have``. Raises :class:`GitTransportError`.
    """
    ref = f"refs/heads/{branch}".encode()
    advertised: list[str] = []

    def wants(refs: Mapping[bytes, bytes], depth: int | None = None) -> Sequence[bytes]:
        head = refs.get(ref)
        if head is None:
            raise GitTransportError(f"ls-refs does not list {branch}")
        advertised.append(head.decode("ascii"))
        return [] if advertised[0] == have else [head]

    known = {ref: known_head.encode("ascii")} if known_head else None
    client = HttpxGitClient(url, token=token, timeout=timeout, stats=stats, known_refs=known)
    try:
        client.fetch_pack(
            "",
            wants,  # type: ignore[arg-type]  # dulwich types refs as Ref/ObjectID
            _Haves(have),  # type: ignore[arg-type]
            write,
            ref_prefix=[ref],
            filter_spec=f"blob:limit={blob_limit}".encode(),
            protocol_version=2,
            # A first fetch needs the head's objects only, not its history. With a
            # ``have`` no depth is sent: upload-pack then ignores the ``have`` (the pack
            # holds every object again), and the commits since the last sync are few.
            depth=None if have else 1,
        )
    except GitTransportError:
        raise
    except Exception as exc:  # whatever breaks the exchange, the REST path takes over
        raise GitTransportError(f"git fetch from {urlsplit(url).path}: {exc!r}") from exc
    finally:
        client.close()
    if not advertised:
        raise GitTransportError("the server listed no refs")
    return advertised[0]

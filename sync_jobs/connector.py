"""The only module that calls GitHub's repository API (through githubkit).

What a sync needs from GitHub, each call retried and counted in one place:

- transient failures (5xx, timeouts, connection resets) are retried with exponential
  backoff; a burst longer than the retries raises :class:`GitHubUnavailableError` so
  the job is retried later;
- rate limits (``X-RateLimit-*``, ``Retry-After``, secondary limits) are waited out
  when the reset is near, and otherwise raise :class:`RateLimitedError` so the job is
  rescheduled; a sync never fails because of a rate limit;
- every HTTP request (retries and redirects included) is counted with its bytes in
  :attr:`GitHubConnector.stats`, which the pipeline stores on the ProjectSync row, and
  reported to :mod:`sync_jobs.metrics` with the ``X-RateLimit-*`` headers it carried.

Git objects never change, so they are cached by SHA in the database (GitTree, Blob)
rather than by ETag. The one read that does use an ETag is the drift reconciler's
branch poll (:meth:`GitHubConnector.branch_head_if_changed`): a ``304`` costs no rate
limit. GitHub's ETags are specific to the token, so after each installation-token
renewal (hourly) the first poll of a branch is a full, counted answer again.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from githubkit import GitHub
from githubkit.auth.base import BaseAuthStrategy
from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed
from redis import Redis

from sync_jobs import defaults, metrics
from sync_jobs.core.tree import TreeItem, git_type, normal_mode
from sync_jobs.errors import (
    BranchNotFoundError,
    EmptyRepositoryError,
    GitHubUnavailableError,
    RateLimitedError,
    RepositoryNotFoundError,
    SyncDataError,
)
from sync_jobs.github_auth import (
    InstallationTokens,
    RateLimit,
    app_client,
    rate_limit_of,
    shared_ssl_context,
    token_request,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

TreeListing = list[tuple[str, str, str, int | None]]
"""A recursive tree answer as ``(path, mode, sha, size)`` rows, paths relative to it."""


@dataclass
class CallStats:
    """API calls and response bytes of one sync (thread-safe)."""

    calls: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, calls: int, size: int) -> None:
        with self._lock:
            self.calls += calls
            self.bytes += size


@dataclass(frozen=True)
class BranchHead:
    commit_sha: str
    tree_sha: str


def _split(full_name: str) -> tuple[str, str]:
    owner, _, repo = full_name.partition("/")
    return owner, repo


class _TokenAuth(httpx.Auth):
    def __init__(self, holder: _InstallationAuth) -> None:
        self._holder = holder

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"token {self._holder.token}"
        yield request


class _InstallationAuth(BaseAuthStrategy):
    """A token that can be swapped while the client lives (renewal after a 401)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_auth_flow(self, github: Any) -> httpx.Auth:
        return _TokenAuth(self)


class GitHubConnector:
    """Repository reads for one sync, authenticated as one installation.

    Use as a context manager: it holds one HTTP connection pool for all calls,
    including those made from its worker threads. ``full_name`` is the repository the
    sync reads; a connector shared by several repositories of the installation (the
    drift reconciler) leaves it empty and names the repository per call.
    ``rate_limit_max_wait`` is how long a call may sleep through a rate limit before
    raising :class:`RateLimitedError`; a maintenance pass passes 0 (it never waits).
    """

    def __init__(
        self,
        *,
        base_url: str,
        app_id: int | None,
        private_key: str | None,
        redis: Redis,
        installation_id: int,
        full_name: str = "",
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = defaults.HTTP_TIMEOUT_SECONDS,
        rate_limit_max_wait: float = defaults.RATE_LIMIT_MAX_WAIT_SECONDS,
    ) -> None:
        self.stats = CallStats()
        # Calls made by this connector, whatever ``stats`` is replaced with (the
        # pipeline shares one CallStats across attempts); reported when it closes.
        self._made = CallStats()
        self.rate_limit: RateLimit | None = None
        """The installation's budget as the last answer's ``X-RateLimit-*`` headers said."""
        self._reported: RateLimit | None = None
        self._reported_at = float("-inf")
        self.full_name = full_name
        self._rate_limit_max_wait = rate_limit_max_wait
        self._base_url = base_url
        self._installation_id = installation_id
        self._sleep = sleep
        self._app = app_client(base_url=base_url, app_id=app_id, private_key=private_key)
        # Narrowed to the synced repository, read only (see github_auth).
        self._tokens = InstallationTokens(
            redis, self._app, private_key=private_key or "", repository=_split(full_name)[1] or None
        )
        self._auth = _InstallationAuth("")
        self._gh: GitHub[Any] = GitHub(
            self._auth,
            base_url=base_url,
            http_cache=False,
            auto_retry=False,
            timeout=timeout,
            ssl_verify=shared_ssl_context(),
        )
        self._pool = ThreadPoolExecutor(defaults.FETCH_CONCURRENCY, thread_name_prefix="github")

    def __enter__(self) -> GitHubConnector:
        self._gh.__enter__()
        self._auth.token = self._call(
            lambda: self._tokens.get(installation_id=self._installation_id), counted=False
        )
        return self

    @property
    def installation_token(self) -> str:
        """The installation token the calls carry (git over HTTP sends it as well)."""
        return self._auth.token

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._gh.__exit__()
        if self._made.calls:
            metrics.record_api_calls(installation_id=self._installation_id, calls=self._made.calls)
        if self.rate_limit is not None and self.rate_limit is not self._reported:
            self._report_rate_limit(self.rate_limit)

    # --- retries, rate limits, counting ------------------------------------------------

    def _call(self, request: Callable[[], T], *, counted: bool = True) -> T:
        """Run one API request with retries; ``counted=False`` for token lookups (which
        count themselves only when they actually mint)."""
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            try:
                before = self._tokens.minted
                result = request()
                self._add(self._tokens.minted - before, 0)
                if counted:
                    self._count(result)
                return result
            except RateLimitExceeded as exc:
                self._count(exc.response)
                wait = max(exc.retry_after.total_seconds(), 1.0)
                if wait > self._rate_limit_max_wait:
                    raise RateLimitedError(
                        f"GitHub's rate limit is exhausted for {wait:.0f} s; "
                        "the sync will run again after the reset.",
                        retry_after_seconds=wait,
                    ) from exc
                log.warning("rate limited on %s; waiting %.1f s", exc.request.url, wait)
                self._sleep(wait)
            except RequestFailed as exc:
                self._count(exc.response)
                status = exc.response.status_code
                if status == 401 and not renewed:
                    renewed = True
                    self._tokens.forget(installation_id=self._installation_id)
                    self._auth.token = self._tokens.mint(installation_id=self._installation_id)
                    self._add(1, 0)
                    continue
                if status < 500 or attempt >= defaults.TRANSIENT_RETRIES:
                    if status >= 500:
                        raise GitHubUnavailableError(
                            f"GitHub answered {status} to {exc.request.method} "
                            f"{exc.request.url.path} {attempt} times in a row; "
                            "the sync will be retried."
                        ) from exc
                    raise
                self._backoff(attempt, f"{status} on {exc.request.url.path}")
            except RequestError as exc:
                self._add(1, 0)
                if attempt >= defaults.TRANSIENT_RETRIES:
                    raise GitHubUnavailableError(
                        f"GitHub could not be reached ({exc.exc!r}) after {attempt} attempts; "
                        "the sync will be retried."
                    ) from exc
                self._backoff(attempt, repr(exc.exc))

    def _count(self, response: Any) -> None:
        raw = getattr(response, "raw_response", None)
        if raw is None:
            return
        size = len(raw.content) if not raw.is_stream_consumed and raw.is_closed else 0
        self._add(1 + len(raw.history), size)
        self._observe_rate_limit(raw)

    def _add(self, calls: int, size: int) -> None:
        self.stats.add(calls, size)
        self._made.add(calls, 0)

    def _observe_rate_limit(self, raw: httpx.Response) -> None:
        """Report the installation's budget; answers to App (JWT) requests, such as a
        refused token mint, carry the App's own budget and are left out."""
        if not raw.request.headers.get("Authorization", "").startswith("token "):
            return
        seen = rate_limit_of(raw.headers)
        if seen is None:
            return
        self.rate_limit = seen
        # Throttled: a sync's blob calls come by the hundred, and each report is a Redis
        # round trip; the last reading is reported when the connector closes.
        if seen.remaining == 0 or (
            time.monotonic() - self._reported_at >= defaults.RATE_LIMIT_REPORT_SECONDS
        ):
            self._report_rate_limit(seen)

    def _report_rate_limit(self, seen: RateLimit) -> None:
        self._reported, self._reported_at = seen, time.monotonic()
        metrics.record_rate_limit(
            installation_id=self._installation_id,
            remaining=seen.remaining,
            limit=seen.limit,
            reset_epoch=seen.reset_epoch,
        )

    def _backoff(self, attempt: int, what: str) -> None:
        delay = defaults.RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)
        log.warning("transient GitHub failure (%s); retrying in %.2f s", what, delay)
        self._sleep(delay)

    def _submit(self, function: Callable[[str], T], item: str) -> Future[T]:
        """Run on the thread pool in a copy of this context (githubkit keeps its shared
        HTTP client in a context variable)."""
        return self._pool.submit(contextvars.copy_context().run, function, item)

    def _parallel(self, function: Callable[[str], T], items: Iterable[str]) -> Iterator[T]:
        """Map over the thread pool, results in the order of ``items``."""
        futures = [self._submit(function, item) for item in items]
        for future in futures:
            yield future.result()

    # --- endpoints ---------------------------------------------------------------------

    @property
    def _owner_repo(self) -> tuple[str, str]:
        return _split(self.full_name)

    def default_branch(self) -> str:
        """The repository's default branch; installation events list repositories
        without it, and a project tracks the default branch unless told otherwise."""
        owner, repo = self._owner_repo
        body = self._call(lambda: self._gh.rest.repos.get(owner, repo)).json()
        return str(body["default_branch"])

    def branch_head(self, branch: str) -> BranchHead:
        """The branch's head commit and root tree, read now (never from a webhook)."""
        owner, repo = self._owner_repo
        try:
            body = self._call(lambda: self._gh.rest.repos.get_branch(owner, repo, branch)).json()
        except RequestFailed as exc:
            if exc.response.status_code not in (404, 409):
                raise
            raise self._explain_missing_branch(branch) from exc
        return BranchHead(body["commit"]["sha"], body["commit"]["commit"]["tree"]["sha"])

    def branch_head_if_changed(
        self, branch: str, etag: str | None, *, full_name: str | None = None
    ) -> tuple[BranchHead | None, str | None]:
        """The branch head, unless it still matches ``etag``; and the answer's ETag.

        One conditional request (``If-None-Match``): ``(None, etag)`` on ``304 Not
        Modified``, which GitHub does not count against the rate limit. Unlike
        :meth:`branch_head` a missing branch is not explained with further calls (a
        sync does that): 404 raises :class:`BranchNotFoundError` and 409 (no commits)
        :class:`EmptyRepositoryError`.
        """
        name = full_name or self.full_name
        owner, repo = _split(name)
        headers = {"If-None-Match": etag} if etag else None
        try:
            response = self._call(
                lambda: self._gh.rest.repos.get_branch(owner, repo, branch, headers=headers)
            )
        except RequestFailed as exc:
            status = exc.response.status_code
            if status == 409:
                raise EmptyRepositoryError(f"Repository {name} is empty (no commits yet).") from exc
            if status == 404:
                raise BranchNotFoundError(
                    f"GitHub answered 404 for branch {branch!r} of {name}: the branch was "
                    "deleted, or the repository is gone or no longer shared with the App."
                ) from exc
            raise
        answered = response.headers.get("ETag")
        if response.status_code == 304:
            return None, answered or etag
        body = response.json()
        return BranchHead(body["commit"]["sha"], body["commit"]["commit"]["tree"]["sha"]), answered

    def branches(self, *, per_page: int, max_pages: int) -> tuple[list[tuple[str, str]], bool]:
        """The repository's branches as ``(name, head commit SHA)`` in GitHub's order,
        following pages up to ``max_pages``; and whether more pages were left unread."""
        owner, repo = self._owner_repo
        found: list[tuple[str, str]] = []
        for page in range(1, max_pages + 1):

            def read(page: int = page) -> Any:
                return self._gh.rest.repos.list_branches(owner, repo, per_page=per_page, page=page)

            body = self._call(read).json()
            found.extend((str(item["name"]), str(item["commit"]["sha"])) for item in body)
            if len(body) < per_page:
                return found, False
        return found, True

    def commits_ahead(self, base: str, head: str) -> tuple[str, int]:
        """GitHub's compare of two commits: its ``status`` (``ahead``, ``behind``,
        ``identical``, ``diverged``) and ``ahead_by``, the commits in ``head`` that are
        not in ``base``. One commit per page is asked for: only the counts are needed."""
        owner, repo = self._owner_repo
        body = self._call(
            lambda: self._gh.rest.repos.compare_commits(
                owner, repo, f"{base}...{head}", per_page=1
            )
        ).json()
        return str(body["status"]), int(body["ahead_by"])

    def _explain_missing_branch(self, branch: str) -> Exception:
        owner, repo = self._owner_repo
        try:
            self._call(lambda: self._gh.rest.repos.get(owner, repo))
        except RequestFailed as exc:
            if exc.response.status_code in (403, 404):
                return RepositoryNotFoundError(
                    f"Repository {self.full_name} is gone or no longer shared with the App; "
                    "re-add it to the installation to sync again."
                )
            raise
        branches = self._call(
            lambda: self._gh.rest.repos.list_branches(owner, repo, per_page=1)
        ).json()
        if not branches:
            return EmptyRepositoryError(
                f"Repository {self.full_name} is empty (no commits yet); push a first commit "
                "and the project will sync."
            )
        return BranchNotFoundError(
            f"Branch {branch!r} does not exist in {self.full_name} (deleted?); push it again "
            "or track another branch."
        )

    def tree(self, sha: str, *, recursive: bool = False) -> tuple[dict[str, Any], bool]:
        """One tree object (or the recursive listing): the JSON body and ``truncated``."""
        owner, repo = self._owner_repo
        if recursive:
            response = self._call(
                lambda: self._gh.rest.git.get_tree(owner, repo, sha, recursive="1")
            )
        else:
            response = self._call(lambda: self._gh.rest.git.get_tree(owner, repo, sha))
        body: dict[str, Any] = dict(response.json())
        return body, bool(body.get("truncated"))

    def tree_items(self, sha: str) -> list[TreeItem]:
        """One directory level as stored in GitTree rows."""
        body, truncated = self.tree(sha)
        if truncated:
            raise SyncDataError(f"GitHub truncated the single-level tree {sha}")
        return [
            TreeItem(
                item["path"],
                normal_mode(item["mode"]),
                git_type(normal_mode(item["mode"])),
                item["sha"],
                item.get("size"),
            )
            for item in body["tree"]
        ]

    def trees(self, shas: Iterable[str]) -> dict[str, list[TreeItem]]:
        """Several tree objects, fetched concurrently."""
        wanted = sorted(set(shas))
        return dict(zip(wanted, self._parallel(self.tree_items, wanted), strict=True))

    def tree_listing(self, sha: str) -> TreeListing | None:
        """Every entry below a tree, ``(path, mode, sha, size)`` relative to it, from one
        ``recursive=1`` call; None when GitHub truncated the listing."""
        body, truncated = self.tree(sha, recursive=True)
        if truncated:
            log.info("recursive tree %s is truncated", sha)
            return None
        return [(i["path"], i["mode"], i["sha"], i.get("size")) for i in body["tree"]]

    def trees_and_listings(
        self, levels: Iterable[str], recursive: Iterable[str]
    ) -> tuple[dict[str, list[TreeItem]], dict[str, TreeListing | None]]:
        """Single levels and recursive listings, all in flight at once (one round trip)."""
        level_futures = {sha: self._submit(self.tree_items, sha) for sha in sorted(set(levels))}
        listing_futures = {
            sha: self._submit(self.tree_listing, sha) for sha in sorted(set(recursive))
        }
        return (
            {sha: future.result() for sha, future in level_futures.items()},
            {sha: future.result() for sha, future in listing_futures.items()},
        )

    def blob(self, sha: str) -> bytes:
        import base64

        owner, repo = self._owner_repo
        body = self._call(lambda: self._gh.rest.git.get_blob(owner, repo, sha)).json()
        if body.get("encoding") == "base64":
            return base64.b64decode(body["content"])
        return str(body["content"]).encode("utf-8")

    def blobs(self, shas: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Blob contents, fetched concurrently, yielded in order of ``shas``."""
        wanted = list(shas)
        yield from zip(wanted, self._parallel(self.blob, wanted), strict=True)

    @contextmanager
    def tarball(self, commit_sha: str) -> Iterator[Iterator[bytes]]:
        """The commit's archive as a stream of gzip'd chunks (GitHub redirects to it)."""
        owner, repo = self._owner_repo
        path = f"/repos/{owner}/{repo}/tarball/{commit_sha}"
        response = self._call(lambda: self._gh.request("GET", path, stream=True), counted=False)
        raw = response.raw_response
        self._add(1 + len(raw.history), 0)
        self._observe_rate_limit(raw)
        try:
            yield self._counted(raw.iter_bytes(1 << 16))
        finally:
            raw.close()

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._add(0, len(chunk))
            yield chunk


# --- warm-up ---------------------------------------------------------------------------

_WARM_UP_REQUESTS: tuple[Callable[[GitHub[Any]], object], ...] = (
    lambda gh: gh.rest.apps.create_installation_access_token(1, data=token_request("r")),
    lambda gh: gh.rest.apps.get_repo_installation("o", "r"),
    lambda gh: gh.rest.repos.get("o", "r"),
    lambda gh: gh.rest.repos.get_branch("o", "r", "main", headers={"If-None-Match": '"e"'}),
    lambda gh: gh.rest.repos.list_branches("o", "r", per_page=1, page=1),
    lambda gh: gh.rest.repos.compare_commits("o", "r", "a...b", per_page=1),
    lambda gh: gh.rest.git.get_tree("o", "r", "0" * 40, recursive="1"),
    lambda gh: gh.rest.git.get_tree("o", "r", "0" * 40),
    lambda gh: gh.rest.git.get_blob("o", "r", "0" * 40),
    lambda gh: gh.request("GET", "/repos/o/r/tarball/main", stream=True).raw_response.close(),
)
"""Every kind of request a sync makes, with the arguments it makes them with."""


@functools.cache
def warm_up() -> None:
    """Load now what the first GitHub calls of a process would load lazily.

    githubkit imports a REST namespace (``rest.repos``, ``rest.git``...) on its first
    use and an endpoint's models, and pydantic's validator of its request body, on the
    endpoint's first call: about 0.3 s, which a forked work horse would otherwise pay
    in every sync. A worker calls this before it forks, so every horse starts with it
    all loaded. Each request above is sent once through a transport that answers in
    this process (nothing leaves it), then a real transport is built without
    connecting, for the HTTP stack (httpcore, h11) a real call loads.
    """
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    with GitHub(
        "warm-up",
        base_url="https://github.invalid",
        http_cache=False,
        auto_retry=False,
        transport=transport,
    ) as gh:
        for request in _WARM_UP_REQUESTS:
            request(gh)
    httpx.HTTPTransport(verify=shared_ssl_context()).close()
    "warm-up.invalid".encode("idna")  # the codec a connection's host name goes through

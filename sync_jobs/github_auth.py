"""Calls made as the App itself (a JWT): installation tokens, shared through Redis, and
the App webhook's delivery log.

An installation token lives an hour on GitHub. Every worker would otherwise mint its own
for every job (one extra API call per sync); caching it in Redis until shortly before
it expires makes a no-op sync cost one call. Only :mod:`sync_jobs.connector` and this
module talk to GitHub.

Tokens are asked for with the least they need: read-only ``contents`` and ``metadata``
(:data:`TOKEN_PERMISSIONS`) and, for a sync, the one repository it reads. The cache
keeps one token per (installation, repository), encrypted with a key derived from the
App's private key: a Redis dump alone holds no usable token, and whoever holds the
private key can mint tokens anyway.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.fernet import Fernet, InvalidToken
from githubkit import AppAuthStrategy, GitHub, Response
from githubkit.exception import RateLimitExceeded, RequestError, RequestFailed
from redis import Redis

from sync_jobs import defaults, keys
from sync_jobs.errors import AppNotConfiguredError, GitHubUnavailableError, RateLimitedError


@dataclass(frozen=True)
class RateLimit:
    """A budget as one answer's ``X-RateLimit-*`` headers describe it."""

    limit: int
    remaining: int
    reset_epoch: int


def rate_limit_of(headers: Mapping[str, str]) -> RateLimit | None:
    """The ``X-RateLimit-*`` headers of an answer, or None when it carries none."""
    try:
        return RateLimit(
            int(headers["x-ratelimit-limit"]),
            int(headers["x-ratelimit-remaining"]),
            int(headers["x-ratelimit-reset"]),
        )
    except (KeyError, ValueError):
        return None


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of the process, as httpx would build it.

    httpx builds a context per client, loading the CA bundle each time (about 17 ms),
    and a sync makes two clients (the App's and the installation's). The context holds
    configuration only, no connection, so threads and forked work horses share it."""
    return httpx.create_ssl_context(trust_env=True)


def app_client(
    *,
    base_url: str,
    app_id: int | None,
    private_key: str | None,
    timeout: float = defaults.HTTP_TIMEOUT_SECONDS,
) -> GitHub[Any]:
    """A githubkit client authenticated as the App itself (a JWT signed by its key)."""
    if not app_id or not private_key:
        raise AppNotConfiguredError(
            "The GitHub App is not configured: set APP_ID and PRIVATE_KEY (or PRIVATE_KEY_PATH)."
        )
    return GitHub(
        AppAuthStrategy(str(app_id), private_key),
        base_url=base_url,
        http_cache=False,
        auto_retry=False,
        timeout=timeout,
        ssl_verify=shared_ssl_context(),
    )


def token_ttl(expires_at: str, now: datetime) -> int:
    """Seconds a token may be reused: until ``expires_at`` less the refresh margin."""
    expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    return int((expiry - now).total_seconds()) - defaults.TOKEN_REFRESH_MARGIN_SECONDS


TOKEN_PERMISSIONS = {"contents": "read", "metadata": "read"}
"""What an installation token is asked for: reading a repository's git data, nothing
more, whatever the App was granted."""


def token_request(repository: str | None) -> Any:
    """The body of ``POST /app/installations/{id}/access_tokens``: read-only, and only
    ``repository`` when one is named."""
    body: dict[str, Any] = {"permissions": dict(TOKEN_PERMISSIONS)}
    if repository:
        body["repositories"] = [repository]
    return body


def _token_cipher(private_key: str) -> Fernet:
    derived = hmac.new(private_key.encode(), b"installation-token-cache", hashlib.sha256)
    return Fernet(base64.urlsafe_b64encode(derived.digest()))


class InstallationTokens:
    """Installation tokens from Redis, minted through the App when absent or stale.

    ``repository`` (a name, without the owner) narrows every token to that repository;
    None leaves it the installation's (the drift reconciler reads several). If GitHub
    refuses the narrowed token (422: the repository was renamed or left the
    installation since the row was written), a read-only token for the installation is
    minted instead, and the sync's own calls then find out what happened.
    """

    def __init__(
        self, redis: Redis, app: GitHub[Any], *, private_key: str, repository: str | None = None
    ) -> None:
        self._redis = redis
        self._app = app
        self._cipher = _token_cipher(private_key)
        self._repository = repository
        self.minted = 0

    def _key(self, installation_id: int) -> str:
        return keys.installation_token_key(installation_id, (self._repository or "").lower())

    def get(self, *, installation_id: int) -> str:
        cached = self._redis.get(self._key(installation_id))
        if cached:
            try:
                return self._cipher.decrypt(cached).decode()  # type: ignore[arg-type]
            except InvalidToken:
                pass  # written under another private key (the App was replaced)
        return self.mint(installation_id=installation_id)

    def mint(self, *, installation_id: int) -> str:
        mint = self._app.rest.apps.create_installation_access_token
        try:
            response = mint(installation_id, data=token_request(self._repository))
        except RequestFailed as exc:
            if exc.response.status_code != 422 or not self._repository:
                raise
            self.minted += 1
            response = mint(installation_id, data=token_request(None))
        self.minted += 1
        body = response.json()
        token = str(body["token"])
        ttl = token_ttl(str(body["expires_at"]), datetime.now(UTC))
        if ttl > 0:
            sealed = self._cipher.encrypt(token.encode())
            self._redis.set(self._key(installation_id), sealed, ex=ttl)
        return token

    def forget(self, *, installation_id: int) -> None:
        """Drop a token GitHub refused (revoked, or the installation was recreated)."""
        self._redis.delete(self._key(installation_id))


def discover_repository(app: GitHub[Any], full_name: str) -> dict[str, Any]:
    """The installation that grants ``full_name`` and the repository's own fields.

    Used to start tracking a repository no webhook has told us about (the CLI).
    """
    owner, _, name = full_name.partition("/")
    installation: dict[str, Any] = dict(app.rest.apps.get_repo_installation(owner, name).json())
    tokens = app.rest.apps.create_installation_access_token(
        installation["id"], data=token_request(name)
    ).json()
    with GitHub(str(tokens["token"]), base_url=str(app.config.base_url), http_cache=False) as gh:
        repository: dict[str, Any] = dict(gh.rest.repos.get(owner, name).json())
    account: dict[str, Any] = dict(installation.get("account") or {})
    return {
        "installation_id": installation["id"],
        "account_login": account.get("login", owner),
        "account_type": account.get("type", "User"),
        "repository_id": repository["id"],
        "full_name": repository["full_name"],
        "default_branch": repository.get("default_branch") or "main",
        "private": bool(repository.get("private")),
    }


class AppDeliveries:
    """The App webhook's delivery log, read and redelivered as the App (JWT).

    Use as a context manager (one connection pool per pass). Each call is made once:
    a maintenance pass that meets a failure simply runs again next round, so nothing
    here sleeps or retries. Raises :class:`RateLimitedError` when GitHub refuses for a
    rate limit, :class:`GitHubUnavailableError` on 5xx or no answer, and githubkit's
    ``RequestFailed`` for any other refusal. :attr:`rate_limit` is the App's budget
    as last seen; it is also what mints installation tokens, so callers keep a reserve.
    """

    def __init__(
        self,
        *,
        base_url: str,
        app_id: int | None,
        private_key: str | None,
        timeout: float = defaults.HTTP_TIMEOUT_SECONDS,
    ) -> None:
        self._gh = app_client(
            base_url=base_url, app_id=app_id, private_key=private_key, timeout=timeout
        )
        self.calls = 0
        self.rate_limit: RateLimit | None = None

    def __enter__(self) -> AppDeliveries:
        self._gh.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._gh.__exit__()

    def pages(self, *, per_page: int) -> Iterator[list[dict[str, Any]]]:
        """``GET /app/hook/deliveries``, newest first, one list per page, following the
        ``Link: rel="next"`` cursor; the caller stops iterating when it has seen enough."""
        options: dict[str, Any] = {"per_page": per_page}
        while True:
            response = self._call(partial(self._gh.rest.apps.list_webhook_deliveries, **options))
            yield list(response.json())
            following = response.raw_response.links.get("next", {}).get("url")
            cursor = parse_qs(urlsplit(following).query).get("cursor") if following else None
            if not cursor:
                return
            options = {"per_page": per_page, "cursor": cursor[0]}

    def redeliver(self, delivery_id: int) -> None:
        """``POST /app/hook/deliveries/{id}/attempts``: GitHub accepts (202) and sends
        the delivery again, same GUID, to the App's current webhook URL."""
        self._call(lambda: self._gh.rest.apps.redeliver_webhook_delivery(delivery_id))

    def _call(self, request: Callable[[], Response[Any, Any]]) -> Response[Any, Any]:
        try:
            response = request()
        except RateLimitExceeded as exc:
            self._observe(exc.response)
            raise RateLimitedError(
                f"GitHub's rate limit for the App is exhausted ({exc.response.status_code} "
                f"on {exc.request.url.path}).",
                retry_after_seconds=exc.retry_after.total_seconds(),
            ) from exc
        except RequestFailed as exc:
            self._observe(exc.response)
            if exc.response.status_code >= 500:
                raise GitHubUnavailableError(
                    f"GitHub answered {exc.response.status_code} to {exc.request.method} "
                    f"{exc.request.url.path}."
                ) from exc
            raise
        except RequestError as exc:
            self.calls += 1
            raise GitHubUnavailableError(f"GitHub could not be reached ({exc.exc!r}).") from exc
        self._observe(response)
        return response

    def _observe(self, response: Response[Any, Any]) -> None:
        self.calls += 1
        self.rate_limit = rate_limit_of(response.headers) or self.rate_limit

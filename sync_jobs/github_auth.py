"""App and installation authentication, with installation tokens shared through Redis.

An installation token lives an hour on GitHub. Every worker would otherwise mint its own
for every job (one extra API call per sync); caching it in Redis until shortly before
it expires makes a no-op sync cost one call. Only :mod:`sync_jobs.connector` and this
module talk to GitHub.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from githubkit import AppAuthStrategy, GitHub
from redis import Redis

from sync_jobs import defaults, keys
from sync_jobs.errors import AppNotConfiguredError


def app_client(*, base_url: str, app_id: int | None, private_key: str | None) -> GitHub[Any]:
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
        timeout=defaults.HTTP_TIMEOUT_SECONDS,
    )


def token_ttl(expires_at: str, now: datetime) -> int:
    """Seconds a token may be reused: until ``expires_at`` less the refresh margin."""
    expiry = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    return int((expiry - now).total_seconds()) - defaults.TOKEN_REFRESH_MARGIN_SECONDS


class InstallationTokens:
    """Installation tokens from Redis, minted through the App when absent or stale."""

    def __init__(self, redis: Redis, app: GitHub[Any]) -> None:
        self._redis = redis
        self._app = app
        self.minted = 0

    def get(self, *, installation_id: int) -> str:
        cached = self._redis.get(keys.installation_token_key(installation_id))
        if cached:
            return cached.decode() if isinstance(cached, bytes) else str(cached)
        return self.mint(installation_id=installation_id)

    def mint(self, *, installation_id: int) -> str:
        response = self._app.rest.apps.create_installation_access_token(installation_id)
        self.minted += 1
        body = response.json()
        token = str(body["token"])
        ttl = token_ttl(str(body["expires_at"]), datetime.now(UTC))
        if ttl > 0:
            self._redis.set(keys.installation_token_key(installation_id), token, ex=ttl)
        return token

    def forget(self, *, installation_id: int) -> None:
        """Drop a token GitHub refused (revoked, or the installation was recreated)."""
        self._redis.delete(keys.installation_token_key(installation_id))


def discover_repository(app: GitHub[Any], full_name: str) -> dict[str, Any]:
    """The installation that grants ``full_name`` and the repository's own fields.

    Used to start tracking a repository no webhook has told us about (the CLI).
    """
    owner, _, name = full_name.partition("/")
    installation: dict[str, Any] = dict(app.rest.apps.get_repo_installation(owner, name).json())
    tokens = app.rest.apps.create_installation_access_token(installation["id"]).json()
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

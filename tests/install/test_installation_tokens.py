"""Installation tokens: asked for with read-only contents and metadata, narrowed to the
repository a sync reads, and cached in Redis only encrypted."""

from __future__ import annotations

import pytest
import redis
from flask import Flask
from githubkit.exception import RequestFailed

from github_emulator import EmulatorServer
from sync_jobs import keys
from sync_jobs.connector import GitHubConnector
from sync_jobs.github_auth import TOKEN_PERMISSIONS
from sync_jobs.redis_client import redis_connection


def connector(github: EmulatorServer, installation_id: int, full_name: str = "") -> GitHubConnector:
    return GitHubConnector(
        base_url=github.url,
        app_id=github.app_id,
        private_key=github.private_key_pem,
        redis=redis_connection(),
        installation_id=installation_id,
        full_name=full_name,
    )


def installation_tokens(github: EmulatorServer) -> list[object]:
    return [t for t in github.state.tokens.values() if t.installation_id is not None]


def test_a_sync_token_reads_one_repository_and_is_cached_encrypted(
    app: Flask, github_emulator: EmulatorServer, redis_url: str
) -> None:
    one = github_emulator.create_repository("octo", "one")
    github_emulator.create_repository("octo", "two")
    installation_id = github_emulator.install("octo", None)
    with app.app_context():
        with connector(github_emulator, installation_id, "octo/one") as gh:
            token = gh._auth.token
            assert gh.default_branch() == "main"
            # The same token cannot read the installation's other repository.
            gh.full_name = "octo/two"
            with pytest.raises(RequestFailed) as refused:
                gh.default_branch()
            assert refused.value.response.status_code == 404
        minted = github_emulator.state.tokens[token]
        assert minted.repository_ids == {one.id}
        assert minted.permissions == TOKEN_PERMISSIONS
        # Cached: the next sync of the same repository mints nothing.
        with connector(github_emulator, installation_id, "octo/one") as gh:
            assert gh._auth.token == token
        assert len(installation_tokens(github_emulator)) == 1
        # Another repository gets a token of its own.
        with connector(github_emulator, installation_id, "octo/two") as gh:
            assert gh._auth.token != token
    key = keys.installation_token_key(installation_id, "one")
    stored = redis.Redis.from_url(redis_url).get(key)
    assert stored and token.encode() not in stored and b"ghs_" not in stored


def test_the_reconciler_token_is_read_only_for_the_installation(
    app: Flask, github_emulator: EmulatorServer
) -> None:
    github_emulator.create_repository("octo", "one")
    installation_id = github_emulator.install("octo", None)
    with app.app_context(), connector(github_emulator, installation_id) as gh:
        minted = github_emulator.state.tokens[gh._auth.token]
    assert minted.repository_ids is None and minted.permissions == TOKEN_PERMISSIONS


def test_a_stale_repository_name_falls_back_to_an_installation_token(
    app: Flask, github_emulator: EmulatorServer
) -> None:
    record = github_emulator.create_repository("octo", "old-name")
    installation_id = github_emulator.install("octo", None)
    github_emulator.rename_repository(record, "new-name")
    with app.app_context(), connector(github_emulator, installation_id, "octo/old-name") as gh:
        minted = github_emulator.state.tokens[gh._auth.token]
    assert minted.repository_ids is None and minted.permissions == TOKEN_PERMISSIONS

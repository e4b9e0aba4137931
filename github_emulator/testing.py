"""pytest fixtures for suites that need a GitHub: load with
``pytest_plugins = ["github_emulator.testing"]``.

Fixtures (function scope unless noted):

- ``github_emulator``: a started :class:`EmulatorServer` on a free loopback port,
  data under the test's tmp dir; stopped afterwards.
- ``emulator_app_key`` (session): one RSA key reused by every emulator in the run,
  because generating a 2048-bit key per test costs ~100 ms.
- ``webhook_receiver``: a :class:`WebhookReceiver` collecting deliveries.
- ``sample_repository``: ``octo/sample`` with a seeded history pushed and the App
  installed on it (a :class:`SampleRepository`).
- ``app_github`` / ``installation_github``: githubkit clients authenticated as the
  App (JWT) and as the sample installation, with ``base_url`` at the emulator.

Helpers for git over HTTP: :func:`installation_token` (a fresh ``ghs_`` token through
the REST API) and :func:`with_credentials` (a clone URL carrying a username and token,
as ``git clone https://x-access-token:<token>@github.com/o/r.git`` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy

from .history import HistoryGenerator, generate_repository, push
from .receiver import WebhookReceiver
from .server import EmulatorServer
from .state import RepositoryRecord, generate_private_key_pem


@dataclass
class SampleRepository:
    """A pushed repository and everything a test needs to drive it further."""

    record: RepositoryRecord
    work_dir: Path
    history: HistoryGenerator
    installation_id: int
    clone_url: str

    @property
    def owner(self) -> str:
        return self.record.owner.login

    @property
    def name(self) -> str:
        return self.record.name

    def push(self, *, force: bool = False) -> None:
        push(self.work_dir, self.clone_url, force=force)


def app_client(server: EmulatorServer) -> GitHub:
    """githubkit authenticated as the server's App (JWT)."""
    return GitHub(AppAuthStrategy(str(server.app_id), server.private_key_pem),
                  base_url=server.url + "/", cache_strategy=MemCacheStrategy())


def installation_client(server: EmulatorServer, installation_id: int) -> GitHub:
    """githubkit authenticated as one installation (token fetched on first use)."""
    return GitHub(AppInstallationAuthStrategy(str(server.app_id), server.private_key_pem,
                                              installation_id), base_url=server.url + "/",
                  cache_strategy=MemCacheStrategy())


def installation_token(server: EmulatorServer, installation_id: int) -> str:
    """A new installation token, fetched as an App does (JWT, then the REST call)."""
    client = app_client(server)  # held: githubkit's namespaces need a live client
    return client.rest.apps.create_installation_access_token(installation_id
                                                             ).parsed_data.token


def with_credentials(url: str, token: str, *, username: str = "x-access-token") -> str:
    """``url`` (``server.http_clone_url(repo)``) with Basic credentials in it; git
    sends them after the emulator's 401 challenge."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(username, safe='')}:{quote(token, safe='')}@{rest}"


@pytest.fixture(scope="session")
def emulator_app_key() -> str:
    return generate_private_key_pem()


@pytest.fixture
def github_emulator(tmp_path: Path, emulator_app_key: str) -> Iterator[EmulatorServer]:
    server = EmulatorServer(tmp_path / "github", private_key_pem=emulator_app_key)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def sample_repository(github_emulator: EmulatorServer, tmp_path: Path) -> SampleRepository:
    record = github_emulator.create_repository("octo", "sample")
    installation_id = github_emulator.install("octo", [record])
    work_dir = tmp_path / "work"
    history = generate_repository(work_dir, seed=1234, files=40, directories=8, commits=3)
    clone_url = github_emulator.clone_url(record)
    push(work_dir, clone_url)
    return SampleRepository(record, work_dir, history, installation_id, clone_url)


@pytest.fixture
def app_github(github_emulator: EmulatorServer) -> GitHub:
    return app_client(github_emulator)


@pytest.fixture
def installation_github(github_emulator: EmulatorServer,
                        sample_repository: SampleRepository) -> GitHub:
    return installation_client(github_emulator, sample_repository.installation_id)

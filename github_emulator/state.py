"""The emulator's memory: accounts, Apps, repositories, installations and tokens.

Everything GitHub would keep in its database lives here, in plain dataclasses behind
one re-entrant lock, because the HTTP server answers on many threads at once. The
git objects themselves stay on disk (see :mod:`github_emulator.gitstore`).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import UnknownInstallationError, UnknownRepositoryError

DEFAULT_PERMISSIONS = {"contents": "read", "metadata": "read"}
"""What a new App asks for unless told otherwise; enough for Project Sync."""

DEFAULT_EVENTS = ["push", "repository"]
"""Events a new App subscribes to unless told otherwise."""

ROLES = ("read", "triage", "write", "maintain", "admin")
"""A person's role on a repository, weakest first (GitHub's repository roles)."""

ROLE_PERMISSIONS = {
    role: {name: ROLES.index(role) >= ROLES.index(least)
           for name, least in (("pull", "read"), ("triage", "triage"), ("push", "write"),
                               ("maintain", "maintain"), ("admin", "admin"))}
    for role in ROLES
}
"""The ``permissions`` object GitHub shows a person for each role."""

NO_ACCESS = "none"
"""An organisation base permission that gives members no repository by default."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Account:
    """A user or organisation: owner of repositories, target of installations."""

    login: str
    id: int
    type: str = "User"  # "User" or "Organization"
    # What an organisation's members get on its repositories without an explicit grant
    # (GitHub's "base permission"): a role, or NO_ACCESS.
    base_permission: str = "read"
    name: str | None = None
    email: str | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class GitHubApp:
    """A registered GitHub App with the credentials GitHub would hand its owner."""

    id: int
    slug: str
    name: str
    owner: Account
    client_id: str
    client_secret: str
    webhook_secret: str
    private_key_pem: str
    webhook_url: str | None = None
    hook_id: int = 0
    permissions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    events: list[str] = field(default_factory=lambda: list(DEFAULT_EVENTS))
    description: str | None = None
    external_url: str = ""
    redirect_url: str | None = None
    setup_url: str | None = None
    callback_urls: list[str] = field(default_factory=list)
    # GitHub's "Expire user authorization tokens": sign-in then hands out a token that
    # expires and a refresh token (``ghr_``) that trades once for a new pair.
    expiring_user_tokens: bool = False
    created_at: datetime = field(default_factory=utcnow)

    @property
    def public_key_pem(self) -> bytes:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class RepositoryRecord:
    """A repository: its stable id survives renames and transfers, as on GitHub."""

    id: int
    owner: Account
    name: str
    private: bool = False
    default_branch: str = "main"
    description: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    pushed_at: datetime | None = None
    # Explicit roles by lower-case login (collaborators, teams): one of ROLES.
    collaborators: dict[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


@dataclass
class Installation:
    """An App installed on an account, seeing all or selected repositories."""

    id: int
    app_id: int
    account: Account
    repository_ids: set[int]
    repository_selection: str = "selected"  # "all" or "selected"
    permissions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    events: list[str] = field(default_factory=lambda: list(DEFAULT_EVENTS))
    members: set[str] = field(default_factory=set)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    suspended_at: datetime | None = None
    suspended_by: Account | None = None


@dataclass
class AccessToken:
    """An installation token (``ghs_``) or a user token from OAuth (``gho_``)."""

    token: str
    expires_at: datetime
    installation_id: int | None = None
    user_login: str | None = None
    repository_ids: set[int] | None = None  # narrowed at creation, None = all visible
    permissions: dict[str, str] | None = None  # what an installation token was granted
    app_id: int | None = None  # the App a user token was issued through
    refresh_token: str | None = None  # issued with an expiring user token


@dataclass
class RefreshGrant:
    """A refresh token (``ghr_``): trades once for a new user token and refresh token."""

    login: str
    app_id: int
    expires_at: datetime
    access_token: str  # the user token issued with it, revoked when it is used


_ID_LOCK = threading.Lock()
_NEXT_ID = {"account": 1000, "app": 100, "repository": 5000, "installation": 20000,
            "hook": 400000}


def generate_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()


class EmulatorState:
    """Registries of everything above, with GitHub-like increasing ids."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.apps: dict[int, GitHubApp] = {}
        self.repositories: dict[int, RepositoryRecord] = {}
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self.revoked_tokens: list[str] = []  # user tokens revoked through the API, in order
        self.oauth_codes: dict[str, tuple[str, int]] = {}  # code -> (login, app id)
        self.manifest_codes: dict[str, dict] = {}  # code -> manifest
        self.archive_links: dict[str, tuple[int, str, datetime]] = {}

    def next_id(self, kind: str) -> int:
        """A new id, unique within the process across emulator instances: clients
        such as githubkit cache tokens by (App, installation) id in process-wide
        memory, and a reused id would hand the next test a dead token."""
        with _ID_LOCK:
            _NEXT_ID[kind] += 1
            return _NEXT_ID[kind]

    def account(self, login: str, *, type: str | None = None) -> Account:
        """The account named ``login``, created on first mention."""
        with self.lock:
            existing = self.accounts.get(login.lower())
            if existing is None:
                existing = Account(login, self.next_id("account"), type or "User")
                self.accounts[login.lower()] = existing
            elif type is not None:
                existing.type = type
            return existing

    def create_app(self, *, name: str, owner: str, webhook_url: str | None = None,
                   private_key_pem: str | None = None, app_id: int | None = None,
                   webhook_secret: str | None = None, client_id: str | None = None,
                   client_secret: str | None = None) -> GitHubApp:
        with self.lock:
            new_id = app_id if app_id is not None else self.next_id("app")
            slug = "-".join(name.lower().split())
            app = GitHubApp(
                id=new_id, slug=slug, name=name, owner=self.account(owner),
                client_id=client_id or f"Iv1.{secrets.token_hex(8)}",
                client_secret=client_secret or secrets.token_hex(20),
                webhook_secret=webhook_secret or secrets.token_hex(20),
                private_key_pem=private_key_pem or generate_private_key_pem(),
                webhook_url=webhook_url, hook_id=self.next_id("hook"),
            )
            self.apps[app.id] = app
            return app

    def find_app(self, issuer: str) -> GitHubApp | None:
        """App by numeric id or client id; GitHub accepts either as JWT ``iss``."""
        with self.lock:
            for app in self.apps.values():
                if issuer in (str(app.id), app.client_id):
                    return app
            return None

    def repository_path(self, repository: RepositoryRecord) -> Path:
        return self.data_dir / repository.owner.login / f"{repository.name}.git"

    def find_repository(self, owner: str, name: str) -> RepositoryRecord | None:
        with self.lock:
            for repository in self.repositories.values():
                if (repository.owner.login.lower() == owner.lower()
                        and repository.name.lower() == name.lower()):
                    return repository
            return None

    def repository(self, full_name_or_id: str | int) -> RepositoryRecord:
        """Repository by id or ``owner/name``; raise for an unknown one."""
        with self.lock:
            if isinstance(full_name_or_id, int):
                found = self.repositories.get(full_name_or_id)
            else:
                owner, _, name = full_name_or_id.partition("/")
                found = self.find_repository(owner, name)
            if found is None:
                raise UnknownRepositoryError(full_name_or_id)
            return found

    def installation(self, installation_id: int) -> Installation:
        with self.lock:
            found = self.installations.get(installation_id)
            if found is None:
                raise UnknownInstallationError(installation_id)
            return found

    def installation_repositories(self, installation: Installation) -> list[RepositoryRecord]:
        """Repositories an installation sees, in id order as GitHub lists them."""
        with self.lock:
            if installation.repository_selection == "all":
                return sorted((r for r in self.repositories.values()
                               if r.owner.id == installation.account.id),
                              key=lambda r: r.id)
            return sorted((self.repositories[i] for i in installation.repository_ids
                           if i in self.repositories), key=lambda r: r.id)

    def installations_for(self, repository: RepositoryRecord) -> list[Installation]:
        with self.lock:
            return [i for i in self.installations.values()
                    if repository in self.installation_repositories(i)]

    def installations_for_user(self, login: str) -> list[Installation]:
        """Installations a signed-in person can reach: their own account's, and those
        with a repository they have access to (as a member or a collaborator), which is
        GitHub's "explicit permission" rule."""
        with self.lock:
            return sorted((i for i in self.installations.values()
                           if i.account.login.lower() == login.lower()
                           or self.user_installation_repositories(login, i)),
                          key=lambda i: i.id)

    def is_member(self, login: str, account: Account) -> bool:
        """Membership of an account, as the emulator records it: on its installations."""
        with self.lock:
            return any(login.lower() in {m.lower() for m in i.members}
                       for i in self.installations.values() if i.account.id == account.id)

    def repository_role(self, login: str, repository: RepositoryRecord) -> str | None:
        """The person's role on a repository, or None when they have no access to it.

        The owner is admin; an explicit grant counts; an organisation's members get its
        base permission. Public repositories give everyone read on GitHub, but GitHub
        lists only *explicit* access at ``/user/installations/{id}/repositories``, and
        that listing is what this answers for.
        """
        with self.lock:
            if repository.owner.login.lower() == login.lower():
                return "admin"
            roles = [repository.collaborators.get(login.lower())]
            base = repository.owner.base_permission
            if base != NO_ACCESS and self.is_member(login, repository.owner):
                roles.append(base)
            held = [r for r in roles if r in ROLES]
            return max(held, key=ROLES.index) if held else None

    def user_installation_repositories(self, login: str, installation: Installation
                                       ) -> list[tuple[RepositoryRecord, str]]:
        """(repository, role) for each of the installation's repositories the person
        has access to, in id order."""
        with self.lock:
            found = []
            for repository in self.installation_repositories(installation):
                role = self.repository_role(login, repository)
                if role is not None:
                    found.append((repository, role))
            return found

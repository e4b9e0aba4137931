"""The emulated GitHub without its HTTP server: state, repositories and webhooks.

:class:`Emulator` is what tests drive from Python (create repositories, install the
App, rename, send webhooks) and what every HTTP handler reads. The server subclass in
:mod:`github_emulator.server` only adds a listening socket.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import defaults, events
from .auth import issue_personal_token
from .counters import RequestCounter, RequestCounts
from .deliveries import DeliveryLog, DeliveryRecord
from .errors import UnknownRepositoryError
from .gitstore import GitStore
from .hooks import install_post_receive
from .knobs import Knobs
from .ratelimit import RateLimiter
from .state import (
    NO_ACCESS,
    ROLES,
    Account,
    EmulatorState,
    GitHubApp,
    Installation,
    RepositoryRecord,
    utcnow,
)

DEFAULT_APP_NAME = "Project Sync"
DEFAULT_APP_OWNER = "project-sync-dev"

RepositoryRef = RepositoryRecord | str | int
"""A repository given as its record, ``owner/name`` or numeric id."""


class Emulator:
    """GitHub's state for one test (or one demo): one primary App plus whatever the
    test creates. Every method is safe to call while requests are being served."""

    def __init__(self, data_dir: Path | str, *, app_name: str = DEFAULT_APP_NAME,
                 app_owner: str = DEFAULT_APP_OWNER, app_id: int | None = None,
                 private_key_pem: str | None = None, webhook_secret: str | None = None,
                 client_id: str | None = None, client_secret: str | None = None,
                 webhook_url: str | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.state = EmulatorState(self.data_dir)
        self.knobs = Knobs()
        self.rate_limiter = RateLimiter()
        self.counter = RequestCounter()
        self.delivery_log = DeliveryLog()
        self.url = "http://127.0.0.1"
        self.app = self.state.create_app(
            name=app_name, owner=app_owner, webhook_url=webhook_url, app_id=app_id,
            private_key_pem=private_key_pem, webhook_secret=webhook_secret,
            client_id=client_id, client_secret=client_secret)
        self.signed_in_user = app_owner
        """Login that ``/login/oauth/authorize`` signs in unless ``?login=`` names one."""
        issue_personal_token(self.state, login=defaults.DEMO_LOGIN,
                             token=defaults.DEMO_PERSONAL_TOKEN)
        self._adopt_existing_repositories()

    def _adopt_existing_repositories(self) -> None:
        """Register ``<owner>/<name>.git`` folders left by an earlier run, so a
        restarted emulator serves them again (ids are reassigned in name order)."""
        for git_dir in sorted(self.data_dir.glob("*/*.git")):
            owner, name = git_dir.parent.name, git_dir.name.removesuffix(".git")
            with self.state.lock:
                record = RepositoryRecord(self.state.next_id("repository"),
                                          self.state.account(owner), name)
                head = GitStore(git_dir).git("symbolic-ref", "--short", "HEAD")
                record.default_branch = head.decode().strip() or "main"
                self.state.repositories[record.id] = record
            install_post_receive(git_dir)

    # -- the primary App's credentials, flattened for convenience -------------------

    @property
    def app_id(self) -> int:
        return self.app.id

    @property
    def private_key_pem(self) -> str:
        return self.app.private_key_pem

    @property
    def webhook_secret(self) -> str:
        return self.app.webhook_secret

    @property
    def webhook_url(self) -> str | None:
        return self.app.webhook_url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self.app.webhook_url = value

    # -- repositories ---------------------------------------------------------------

    def create_repository(self, owner: str, name: str, *, private: bool = False,
                          default_branch: str = "main", owner_type: str | None = None,
                          description: str | None = None) -> RepositoryRecord:
        """A new empty bare repository at ``<data_dir>/<owner>/<name>.git`` with the
        post-receive hook installed; push to :meth:`clone_url` to fill it."""
        with self.state.lock:
            if self.state.find_repository(owner, name) is not None:
                raise ValueError(f"repository {owner}/{name} already exists")
            record = RepositoryRecord(self.state.next_id("repository"),
                                      self.state.account(owner, type=owner_type), name,
                                      private=private, default_branch=default_branch,
                                      description=description)
            self.state.repositories[record.id] = record
        git = self.git(record)
        git.init_bare(default_branch)
        install_post_receive(git.path)
        return record

    def repository(self, ref: RepositoryRef) -> RepositoryRecord:
        if isinstance(ref, RepositoryRecord):
            return ref
        return self.state.repository(ref)

    def git(self, repo: RepositoryRef) -> GitStore:
        return GitStore(self.state.repository_path(self.repository(repo)))

    def clone_url(self, repo: RepositoryRef) -> str:
        """Path git can push to and clone from (local transport, so hooks run)."""
        return str(self.state.repository_path(self.repository(repo)))

    def http_clone_url(self, repo: RepositoryRef) -> str:
        """The repository's ``clone_url`` over smart HTTP (GitHub's shape); git asks
        for credentials unless the repository is public and only fetched."""
        return f"{self.url}/{self.repository(repo).full_name}.git"

    def personal_token(self, login: str) -> str:
        """A new non-expiring personal access token (``ghp_``) of ``login``, for the
        REST API and for git over HTTP (any username, the token as password)."""
        return issue_personal_token(self.state, login=login).token

    def rename_repository(self, repo: RepositoryRef, new_name: str) -> DeliveryRecord | None:
        """Rename on disk and in state, then send ``repository renamed``."""
        record = self.repository(repo)
        old_path = self.state.repository_path(record)
        old_name, old_full_name = record.name, record.full_name
        with self.state.lock:
            record.name = new_name
            record.updated_at = utcnow()
        old_path.rename(self.state.repository_path(record))
        return self._send_repository_event(record, "renamed",
                                           {"repository": {"name": {"from": old_name}}},
                                           formerly=old_full_name)

    def transfer_repository(self, repo: RepositoryRef, new_owner: str, *,
                            owner_type: str | None = None) -> DeliveryRecord | None:
        """Move to another account and send ``repository transferred``."""
        from .shapes import user

        record = self.repository(repo)
        old_path = self.state.repository_path(record)
        old_owner, old_full_name = record.owner, record.full_name
        with self.state.lock:
            record.owner = self.state.account(new_owner, type=owner_type)
            record.updated_at = utcnow()
            # An installation covers its own account's repositories only: the old
            # owner's installations lose it, selected or not.
            for installation in self.state.installations.values():
                if installation.account.id != record.owner.id:
                    installation.repository_ids.discard(record.id)
        new_path = self.state.repository_path(record)
        new_path.parent.mkdir(parents=True, exist_ok=True)
        old_path.rename(new_path)
        key = "user" if old_owner.type == "User" else "organization"
        changes = {"owner": {"from": {key: user(self.url, old_owner)}}}
        return self._send_repository_event(record, "transferred", changes,
                                           installations=self.state.installations_for(record),
                                           formerly=old_full_name)

    def delete_repository(self, repo: RepositoryRef) -> DeliveryRecord | None:
        """Send ``repository deleted`` (while installations still see it), then delete."""
        record = self.repository(repo)
        delivery = self._send_repository_event(record, "deleted", None)
        with self.state.lock:
            del self.state.repositories[record.id]
            for installation in self.state.installations.values():
                installation.repository_ids.discard(record.id)
        shutil.rmtree(self.state.repository_path(record), ignore_errors=True)
        return delivery

    def _send_repository_event(self, record: RepositoryRecord, action: str,
                               changes: dict[str, Any] | None, *,
                               installations: list[Installation] | None = None,
                               formerly: str | None = None) -> DeliveryRecord | None:
        """Send ``repository <action>`` to every installation seeing ``record``;
        ``formerly`` is the full name before a rename or transfer, which the
        ``drop_webhooks_for`` knob also matches."""
        if self.knobs.drops(record.full_name, *([formerly] if formerly else [])):
            return None
        last = None
        for installation in installations or self.state.installations_for(record):
            payload = events.repository_event(self.url, action, repo=record,
                                              installation=installation,
                                              sender=record.owner, changes=changes)
            last = self.send_webhook("repository", payload,
                                     app=self.state.apps[installation.app_id])
        return last

    # -- people's access ------------------------------------------------------------

    def grant(self, repo: RepositoryRef, login: str, role: str) -> None:
        """Give ``login`` a role on a repository (``read``, ``triage``, ``write``,
        ``maintain``, ``admin``), as adding a collaborator or a team does."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        record = self.repository(repo)
        with self.state.lock:
            record.collaborators[login.lower()] = role

    def set_base_permission(self, account: str, role: str) -> None:
        """An organisation's base permission for its members: a role, or ``none`` so
        members see only repositories they were granted."""
        if role not in (*ROLES, NO_ACCESS):
            raise ValueError(f"unknown base permission {role!r}")
        with self.state.lock:
            self.state.account(account).base_permission = role

    # -- installations --------------------------------------------------------------

    def install(self, account: str, repositories: list[RepositoryRef] | None = None, *,
                app: GitHubApp | None = None, account_type: str | None = None,
                members: tuple[str, ...] = ()) -> int:
        """Install an App on ``account`` (all its repositories when ``repositories``
        is None) and send ``installation created``; return the installation id."""
        github_app = app or self.app
        records = [self.repository(r) for r in repositories or []]
        with self.state.lock:
            installation = Installation(
                self.state.next_id("installation"), github_app.id,
                self.state.account(account, type=account_type),
                {r.id for r in records},
                repository_selection="all" if repositories is None else "selected",
                permissions=dict(github_app.permissions), events=list(github_app.events),
                members=set(members))
            self.state.installations[installation.id] = installation
        self._send_installation_event(installation, "created")
        return installation.id

    def installation(self, installation_id: int) -> Installation:
        return self.state.installation(installation_id)

    def _send_installation_event(self, installation: Installation, action: str
                                 ) -> DeliveryRecord:
        github_app = self.state.apps[installation.app_id]
        payload = events.installation_event(
            self.url, action, installation=installation, app=github_app,
            repositories=self.state.installation_repositories(installation),
            sender=installation.account)
        return self.send_webhook("installation", payload, app=github_app)

    def uninstall(self, installation_id: int) -> DeliveryRecord:
        """Send ``installation deleted`` and forget the installation and its tokens."""
        installation = self.installation(installation_id)
        delivery = self._send_installation_event(installation, "deleted")
        with self.state.lock:
            del self.state.installations[installation_id]
            for token in [t for t, v in self.state.tokens.items()
                          if v.installation_id == installation_id]:
                del self.state.tokens[token]
        return delivery

    def suspend(self, installation_id: int) -> DeliveryRecord:
        installation = self.installation(installation_id)
        with self.state.lock:
            installation.suspended_at = utcnow()
            installation.suspended_by = installation.account
        return self._send_installation_event(installation, "suspend")

    def unsuspend(self, installation_id: int) -> DeliveryRecord:
        installation = self.installation(installation_id)
        with self.state.lock:
            installation.suspended_at = None
            installation.suspended_by = None
        return self._send_installation_event(installation, "unsuspend")

    def accept_new_permissions(self, installation_id: int,
                               permissions: dict[str, str]) -> DeliveryRecord:
        installation = self.installation(installation_id)
        with self.state.lock:
            installation.permissions.update(permissions)
            installation.updated_at = utcnow()
        return self._send_installation_event(installation, "new_permissions_accepted")

    def add_repositories(self, installation_id: int, repositories: list[RepositoryRef]
                         ) -> DeliveryRecord:
        """Grant repositories and send ``installation_repositories added``."""
        return self._change_repositories(installation_id, repositories, "added")

    def remove_repositories(self, installation_id: int, repositories: list[RepositoryRef]
                            ) -> DeliveryRecord:
        """Revoke repositories and send ``installation_repositories removed``."""
        return self._change_repositories(installation_id, repositories, "removed")

    def _change_repositories(self, installation_id: int, repositories: list[RepositoryRef],
                             action: str) -> DeliveryRecord:
        installation = self.installation(installation_id)
        records = [self.repository(r) for r in repositories]
        with self.state.lock:
            if installation.repository_selection == "all":
                installation.repository_ids = {
                    r.id for r in self.state.installation_repositories(installation)}
                installation.repository_selection = "selected"
            for record in records:
                if action == "added":
                    installation.repository_ids.add(record.id)
                else:
                    installation.repository_ids.discard(record.id)
        github_app = self.state.apps[installation.app_id]
        payload = events.installation_repositories_event(
            self.url, action, installation=installation, app=github_app,
            added=records if action == "added" else [],
            removed=records if action == "removed" else [], sender=installation.account)
        return self.send_webhook("installation_repositories", payload, app=github_app)

    # -- webhooks -------------------------------------------------------------------

    def send_webhook(self, event: str, payload: dict[str, Any], *,
                     app: GitHubApp | None = None) -> DeliveryRecord:
        """Sign and deliver ``payload`` now; the record holds the receiver's answer."""
        return self.delivery_log.send(app or self.app, event, payload,
                                      content_type=self.knobs.webhook_content_type,
                                      timeout=self.knobs.webhook_timeout)

    def ping(self, app: GitHubApp | None = None) -> DeliveryRecord:
        github_app = app or self.app
        payload = events.ping_event(self.url, github_app, self.knobs.webhook_content_type)
        return self.send_webhook("ping", payload, app=github_app)

    def redeliver(self, delivery_id: int) -> DeliveryRecord:
        """Send a logged delivery again: same payload, same ``X-GitHub-Delivery``."""
        original = self.delivery_log.find(delivery_id)
        if original is None:
            raise KeyError(delivery_id)
        return self.delivery_log.send(self.state.apps[original.app_id], original.event,
                                      original.payload,
                                      content_type=self.knobs.webhook_content_type,
                                      timeout=self.knobs.webhook_timeout,
                                      guid=original.guid, redelivery=True)

    def age_delivery(self, delivery_id: int, *, seconds: float) -> DeliveryRecord:
        """Pretend a delivery happened ``seconds`` earlier: past three days GitHub
        neither lists nor redelivers it, which tests reach without waiting."""
        return self.delivery_log.age(delivery_id, seconds=seconds)

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        """Every delivery attempted so far, oldest first."""
        return self.delivery_log.records

    def deliver_push(self, repo: RepositoryRef, updates: list[tuple[str, str, str]], *,
                     pusher: str | None = None) -> list[DeliveryRecord]:
        """Send one ``push`` per (before, after, ref) update to every installation that
        sees the repository; the post-receive hook calls this after each push."""
        record = self.repository(repo)
        git = self.git(record)
        account = self.state.account(pusher) if pusher else record.owner
        with self.state.lock:
            record.pushed_at = utcnow()
        if self.knobs.drops(record.full_name):
            return []  # lost as GitHub sometimes loses them: not sent, not logged
        sent = []
        for before, after, ref in updates:
            for installation in self.state.installations_for(record):
                if installation.suspended_at is not None:
                    continue
                payload = events.push(self.url, repo=record, git=git, ref=ref,
                                      before=before, after=after, pusher=account,
                                      installation=installation)
                sent.append(self.send_webhook("push", payload,
                                              app=self.state.apps[installation.app_id]))
        return sent

    def repository_at(self, git_dir: Path | str) -> RepositoryRecord:
        """The repository stored at ``git_dir`` (how the hook names its repository)."""
        wanted = Path(git_dir).resolve()
        with self.state.lock:
            for record in self.state.repositories.values():
                if self.state.repository_path(record).resolve() == wanted:
                    return record
        raise UnknownRepositoryError(str(git_dir))

    # -- metering -------------------------------------------------------------------

    def request_counts(self) -> RequestCounts:
        return self.counter.snapshot()

    def reset_counts(self) -> None:
        self.counter.reset()

    def reset_knobs(self) -> None:
        """No latency, no faults, GitHub's limits and fresh rate budgets."""
        self.knobs.reset()
        self.rate_limiter.reset()

    def account(self, login: str) -> Account:
        return self.state.account(login)

    def write_url_file(self) -> None:
        (self.data_dir / defaults.URL_FILE_NAME).write_text(self.url)

"""``flask sync owner/repo [--branch B] [--full]`` and ``flask untrack owner/repo [--branch B]``.

``sync`` runs the same pipeline as the RQ job, in this process, with a progress bar. A
repository that no webhook has announced yet is looked up through the App's
credentials (which installation grants it). Everything is checked on GitHub first (the
App configured, the repository installed, the branch there); only then are rows
written, so a typo leaves no project, sync or failed attempt behind, and every
problem is one line on stderr with a non-zero exit.

With no App configured but ``make run``'s demo in the instance folder, the command
uses the demo's GitHub, credentials and Redis, as the demo's worker does.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from githubkit.exception import GitHubException, RequestFailed
from redis import Redis
from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from models import Installation, Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db
from models.base import discard_session
from sync_jobs import defaults
from sync_jobs.errors import ProjectSyncError
from sync_jobs.progress import Phase, ProgressEvent
from sync_jobs.redis_client import redis_connection
from sync_jobs.sync_job import lock_heartbeat, running_lock

FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
"""``owner/repo`` as GitHub spells repositories."""

DEMO_CREDENTIALS = Path("emulator") / "app.json"
"""Where ``make run`` (scripts/run.py) keeps the demo App's credentials and the demo
GitHub's URL, relative to the instance folder."""

DEMO_RUN_FILE = "run.json"
"""Beside the demo's ``emulator/`` folder, ``make run`` (scripts/run.py) writes the URL
of the Redis it started for itself while it runs."""


def _one_line(exc: BaseException) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())


def _one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Every failure a person can meet ends as one line and exit code 1, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except click.ClickException:
            raise
        except RedisError as exc:
            url = current_app.config["REDIS_URL"]
            raise click.ClickException(f"Redis at {url} does not answer: {_one_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise click.ClickException(f"the database failed: {_one_line(exc)}") from exc
        except (ProjectSyncError, GitHubException, OSError) as exc:
            raise click.ClickException(_one_line(exc)) from exc

    return wrapper


# --- Configuration: the App, or the local demo ------------------------------------------


def _answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (RedisError, ValueError):
        return False


def _use_demo() -> None:
    """With no App configured, take the demo's GitHub and credentials (and its Redis, if
    the configured one does not answer), as ``make run`` gives them to its worker."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    # DEMO_CREDENTIALS_FILE is not an environment setting: tests point it elsewhere than
    # this checkout's instance folder, where a real demo may be running.
    path = Path(config.get("DEMO_CREDENTIALS_FILE") or Path(app.instance_path) / DEMO_CREDENTIALS)
    if config.get("APP_ID") or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
        settings = {
            "APP_ID": int(saved["app_id"]),
            "PRIVATE_KEY": str(saved["private_key_pem"]),
            "GITHUB_API_URL": str(saved["api_url"]),
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(
            f"the demo's credentials in {path} are unreadable: {_one_line(exc)}"
        ) from exc
    config.update(settings)
    demo_redis = _demo_redis_url(path.parent.parent / DEMO_RUN_FILE)
    if demo_redis and not os.environ.get("REDIS_URL") and _answers(demo_redis):
        from sync_jobs import redis_client

        config["REDIS_URL"] = demo_redis
        redis_client.init_app(app)
    click.echo(f"No APP_ID configured: using the demo GitHub at {settings['GITHUB_API_URL']}")


def _demo_redis_url(run_file: Path) -> str | None:
    """The Redis of the running ``make run`` (its own, on a port it chose), if any."""
    try:
        url = json.loads(run_file.read_text()).get("redis_url")
    except (OSError, ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


def _require_app() -> None:
    config = current_app.config
    if not (config.get("APP_ID") and config.get("PRIVATE_KEY")):
        raise click.ClickException(
            "The GitHub App is not configured: set APP_ID and PRIVATE_KEY (or register one "
            "at /setup), or start the demo with make run."
        )


# --- What GitHub says, before anything is written ----------------------------------------


@dataclass(frozen=True)
class _Target:
    """A repository and branch GitHub confirmed: the stored repository, or what GitHub
    said about one not stored yet."""

    full_name: str
    branch: str
    repository: Repository | None
    discovered: dict[str, Any] | None


def _connector(*, installation_id: int, full_name: str) -> Any:
    from sync_jobs.connector import GitHubConnector

    config = current_app.config
    return GitHubConnector(
        base_url=config["GITHUB_API_URL"],
        app_id=config["APP_ID"],
        private_key=config["PRIVATE_KEY"],
        redis=redis_connection(),
        installation_id=installation_id,
        full_name=full_name,
        timeout=defaults.WEB_GITHUB_TIMEOUT_SECONDS,
        rate_limit_max_wait=0,
    )


def _discover(full_name: str) -> dict[str, Any]:
    from sync_jobs.github_auth import app_client, discover_repository

    config = current_app.config
    client = app_client(
        base_url=config["GITHUB_API_URL"],
        app_id=config["APP_ID"],
        private_key=config["PRIVATE_KEY"],
    )
    try:
        return discover_repository(client, full_name)
    except RequestFailed as exc:
        status = exc.response.status_code
        if status == 404:
            raise click.ClickException(
                f"{full_name} does not exist on GitHub, or the App is not installed on it; "
                "check the name, or install the App on the repository."
            ) from exc
        raise click.ClickException(
            f"GitHub answered {status} when asked for {full_name}; check the App's "
            "credentials (APP_ID, PRIVATE_KEY) and its installation."
        ) from exc
    except GitHubException as exc:
        url = config["GITHUB_API_URL"]
        raise click.ClickException(f"GitHub at {url} did not answer: {_one_line(exc)}") from exc


def _resolve(full_name: str, branch: str | None) -> _Target:
    """Confirm on GitHub that the repository is installed and the branch exists."""
    if not FULL_NAME.match(full_name):
        raise click.ClickException(
            f"{full_name!r} is not a repository name; give it as owner/repo."
        )
    repository = db.session.scalar(select(Repository).where(Repository.full_name == full_name))
    installed = repository is not None and repository.installation is not None
    discovered = None if installed else _discover(full_name)
    if repository is not None and installed:
        assert repository.installation is not None
        installation_id = repository.installation.github_id
        default_branch = repository.default_branch
    else:
        assert discovered is not None
        installation_id = discovered["installation_id"]
        default_branch = discovered["default_branch"]
        full_name = discovered["full_name"]
    branch = branch or default_branch
    try:
        with _connector(installation_id=installation_id, full_name=full_name) as github:
            github.branch_head(branch)
    except ProjectSyncError as exc:
        raise click.ClickException(_one_line(exc)) from exc
    except GitHubException as exc:
        raise click.ClickException(
            f"GitHub did not say whether {full_name}@{branch} exists: {_one_line(exc)}"
        ) from exc
    return _Target(full_name, branch, repository if installed else None, discovered)


# --- Rows, once GitHub agreed --------------------------------------------------------------


def _stored_repository(target: _Target) -> Repository:
    """The repository row of a confirmed target, created (with its installation) if new."""
    if target.repository is not None:
        return target.repository
    found = target.discovered
    assert found is not None
    installation = db.session.scalar(
        select(Installation).where(Installation.github_id == found["installation_id"])
    ) or Installation(
        github_id=found["installation_id"],
        account_login=found["account_login"],
        account_type=found["account_type"],
    )
    repository = db.session.scalar(
        select(Repository).where(Repository.github_id == found["repository_id"])
    ) or Repository(github_id=found["repository_id"])
    repository.installation = installation
    repository.full_name = found["full_name"]
    repository.default_branch = found["default_branch"]
    repository.private = found["private"]
    db.session.add_all([installation, repository])
    return repository


def _tracked_project(repository: Repository, branch: str) -> Project:
    """The project of (repository, branch), created or tracked again; flushed only."""
    project = db.session.scalar(
        select(Project).where(Project.repository_id == repository.id, Project.branch == branch)
    )
    if project is None:
        project = Project(repository=repository, branch=branch)
        db.session.add(project)
    elif not project.tracked:
        project.tracked, project.untracked_at = True, None
        click.echo(f"tracking {repository.full_name}@{branch} again (project {project.id})")
    db.session.flush()
    return project


@contextmanager
def _running_lock(project: Project, label: str) -> Iterator[tuple[Lock, str]]:
    token = f"cli-{uuid.uuid4().hex}"
    lock = running_lock(redis_connection(), project.id)
    if not lock.acquire(token=token, blocking=False):
        db.session.rollback()
        raise click.ClickException(
            f"another sync of {label} is running; try again when it has ended"
        )
    try:
        yield lock, token
    finally:
        with suppress(LockError, RedisError):
            lock.release()


class _Bar:
    """One click progress bar per phase, redrawn from progress events."""

    def __init__(self) -> None:
        self.phase: Phase | None = None
        self.bar: object | None = None
        self.shown = 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.final:
            self._close()
            colour = "green" if event.outcome == SyncStatus.SUCCEEDED else "red"
            click.secho(f"{event.outcome}: {event.message}", fg=colour)
            return
        if event.phase != self.phase:
            self._close()
            self.phase = event.phase
            self.bar = click.progressbar(
                length=max(event.total, 1), label=f"{event.phase:8}", show_pos=True
            ).__enter__()
            self.shown = 0
        bar = self.bar
        if bar is not None and event.total:
            bar.length = event.total  # type: ignore[attr-defined]
            step = max(event.done - self.shown, 0)
            bar.update(step)  # type: ignore[attr-defined]
            self.shown += step

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)  # type: ignore[attr-defined]
            self.bar = None


def _run(sync: ProjectSync, lock: Lock, token: str, *, full: bool) -> None:
    """Run the sync in this process under the project's running lock; a failure that a
    job would retry ends it failed here, since no job will run it again."""
    from sync_jobs.pipeline import execute_sync, mark_failed

    try:
        with lock_heartbeat(lock, token):
            execute_sync(sync.id, full=full, on_event=_Bar())
    except Exception as exc:
        discard_session()
        mark_failed(sync.id, f"{exc or type(exc).__name__}. Run the command again.")
        raise click.ClickException(_one_line(exc)) from exc


@click.command("sync")
@click.argument("full_name")
@click.option("--branch", help="Branch to track (default: the repository's default branch).")
@click.option("--full", is_flag=True, help="Ignore stored trees and compare everything.")
@with_appcontext
@_one_line_errors
def sync_command(full_name: str, branch: str | None, full: bool) -> None:
    """Sync FULL_NAME (owner/repo) now and show progress."""
    _use_demo()
    _require_app()
    target = _resolve(full_name, branch)
    label = f"{target.full_name}@{target.branch}"
    project = _tracked_project(_stored_repository(target), target.branch)
    with _running_lock(project, label) as (lock, token):
        sync = ProjectSync(
            project=project, trigger=SyncTrigger.MANUAL, rq_job_id=token, full_requested=full
        )
        db.session.add(sync)
        db.session.commit()
        click.echo(f"syncing {label} (sync {sync.id})")
        _run(sync, lock, token, full=full)
    db.session.refresh(sync)
    click.echo(
        f"{sync.files_added} added, {sync.files_modified} modified, "
        f"{sync.files_removed} removed, {sync.files_unchanged} unchanged; "
        f"{sync.api_calls} API calls, {sync.bytes_fetched} bytes"
    )
    if sync.status is SyncStatus.FAILED:
        raise SystemExit(1)


@click.command("untrack")
@click.argument("full_name")
@click.option("--branch", help="Branch to stop tracking (default: the repository's default).")
@with_appcontext
@_one_line_errors
def untrack_command(full_name: str, branch: str | None) -> None:
    """Stop tracking FULL_NAME's branch: no more syncs, gone from the lists; its history
    stays, and syncing the branch again tracks it again."""
    from webhook_app.api_actions import untrack_branch

    repository = db.session.scalar(select(Repository).where(Repository.full_name == full_name))
    if repository is None:
        raise click.ClickException(f"{full_name} is not tracked here (no such repository).")
    branch = branch or repository.default_branch
    project = db.session.scalar(
        select(Project).where(Project.repository_id == repository.id, Project.branch == branch)
    )
    if project is None:
        raise click.ClickException(f"{full_name}@{branch} is not tracked here.")
    if not project.tracked:
        click.echo(f"{full_name}@{branch} (project {project.id}) is already untracked")
        return
    untrack_branch(project)
    click.echo(
        f"untracked {full_name}@{branch} (project {project.id}); its history stays, and "
        f"`flask sync {full_name} --branch {branch}` tracks it again"
    )


"""``flask sync owner/repo [--branch B] [--full]``: sync one project now, with a progress bar.

Runs the same pipeline as the RQ job, in this process. A repository that no webhook
has announced yet is looked up through the App's credentials (which installation grants
it) and its Installation, Repository and Project rows are created.
"""

from __future__ import annotations

import uuid
from contextlib import suppress

import click
from flask import current_app
from flask.cli import with_appcontext
from redis.exceptions import LockError, RedisError
from redis.lock import Lock
from sqlalchemy import select

from models import Installation, Project, ProjectSync, Repository, SyncStatus, SyncTrigger, db
from models.base import discard_session
from sync_jobs.errors import ProjectSyncError
from sync_jobs.progress import Phase, ProgressEvent
from sync_jobs.redis_client import redis_connection
from sync_jobs.sync_job import lock_heartbeat, running_lock


def _repository(full_name: str) -> Repository:
    repository = db.session.scalar(select(Repository).where(Repository.full_name == full_name))
    if repository is not None:
        return repository
    from sync_jobs.github_auth import app_client, discover_repository

    config = current_app.config
    found = discover_repository(
        app_client(
            base_url=config["GITHUB_API_URL"],
            app_id=config.get("APP_ID"),
            private_key=config.get("PRIVATE_KEY"),
        ),
        full_name,
    )
    installation = db.session.scalar(
        select(Installation).where(Installation.github_id == found["installation_id"])
    ) or Installation(
        github_id=found["installation_id"],
        account_login=found["account_login"],
        account_type=found["account_type"],
    )
    repository = Repository(
        github_id=found["repository_id"],
        installation=installation,
        full_name=found["full_name"],
        default_branch=found["default_branch"],
        private=found["private"],
    )
    db.session.add_all([installation, repository])
    db.session.commit()
    return repository


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
        raise click.ClickException(f"{exc or type(exc).__name__}") from exc


@click.command("sync")
@click.argument("full_name")
@click.option("--branch", help="Branch to track (default: the repository's default branch).")
@click.option("--full", is_flag=True, help="Ignore stored trees and compare everything.")
@with_appcontext
def sync_command(full_name: str, branch: str | None, full: bool) -> None:
    """Sync FULL_NAME (owner/repo) now and show progress."""
    try:
        repository = _repository(full_name)
    except ProjectSyncError as exc:
        raise click.ClickException(str(exc)) from exc
    branch = branch or repository.default_branch
    project = db.session.scalar(
        select(Project).where(Project.repository_id == repository.id, Project.branch == branch)
    )
    if project is None:
        project = Project(repository=repository, branch=branch)
        db.session.add(project)
    db.session.flush()
    redis = redis_connection()
    token = f"cli-{uuid.uuid4().hex}"
    lock = running_lock(redis, project.id)
    if not lock.acquire(token=token, blocking=False):
        db.session.rollback()
        raise click.ClickException(
            f"another sync of {full_name}@{branch} is running; try again when it has ended"
        )
    try:
        sync = ProjectSync(project=project, trigger=SyncTrigger.MANUAL, rq_job_id=token)
        db.session.add(sync)
        db.session.commit()
        click.echo(f"syncing {full_name}@{branch} (sync {sync.id})")
        _run(sync, lock, token, full=full)
    finally:
        with suppress(LockError, RedisError):
            lock.release()
    db.session.refresh(sync)
    click.echo(
        f"{sync.files_added} added, {sync.files_modified} modified, "
        f"{sync.files_removed} removed, {sync.files_unchanged} unchanged; "
        f"{sync.api_calls} API calls, {sync.bytes_fetched} bytes"
    )
    if sync.status is SyncStatus.FAILED:
        raise SystemExit(1)

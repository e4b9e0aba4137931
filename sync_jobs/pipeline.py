"""The sync pipeline: resolve → diff → fetch → apply, as a generator of progress events.

:func:`execute_sync` is the job body (called by ``sync_jobs.sync_job.run_sync`` once it
holds the project's running lock). It drives :func:`run_pipeline`, publishes every
event to the sync's Redis Stream and records the outcome on the ProjectSync row:

- permanent failures (empty repository, deleted branch, removed repository, App not
  configured) end the sync as ``failed`` with a message a person can act on;
- anything else (GitHub unavailable, rate limit beyond a short wait, database errors)
  is published as a ``retry`` event and re-raised; the job layer
  (:mod:`sync_jobs.sync_job`) decides when the sync runs again, from the same
  committed state;
- a sync that finds another sync already applied the head it would apply ends as
  ``superseded``.

The branch head is read when the job runs, never taken from a webhook, so pushes
arriving out of order can never move a project backwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import select

from models import GitTree, Project, ProjectSync, Repository, db
from models.base import discard_session, utcnow
from models.enums import SyncMode, SyncStatus, SyncTrigger
from sync_jobs import defaults, metrics
from sync_jobs.apply import ApplyPlan, apply_sync, count_files, current_files, store_trees
from sync_jobs.connector import BranchHead, CallStats, GitHubConnector
from sync_jobs.core.diff import Delta, diff_flat
from sync_jobs.core.merkle import MerkleWalk
from sync_jobs.core.plan import (
    DeltaBase,
    FetchCosts,
    FetchStrategy,
    PushedHead,
    choose_fetch,
    delta_blocker,
)
from sync_jobs.core.tree import build_trees
from sync_jobs.errors import LostRaceError, PermanentSyncError, RepositoryNotFoundError
from sync_jobs.fetch import (
    BlobWriter,
    FetchProgress,
    fetch_blobs,
    has_any_blob,
    read_tarball,
    stored_blob_shas,
)
from sync_jobs.git_fetch import (
    GitDownload,
    GitObjects,
    head_over_git,
    objects_over_git,
    start_git_fetch,
)
from sync_jobs.progress import Phase, ProgressEvent, ProgressPublisher, describe_fetch
from sync_jobs.redis_client import redis_connection
from sync_jobs.trees import TreeSource, listed_sizes, stored_sizes

log = logging.getLogger(__name__)

FETCH_COSTS = FetchCosts(
    blob_call_seconds=defaults.BLOB_CALL_SECONDS,
    concurrency=defaults.FETCH_CONCURRENCY,
    tarball_fixed_seconds=defaults.TARBALL_FIXED_SECONDS,
    tarball_seconds_per_file=defaults.TARBALL_SECONDS_PER_FILE,
)

Events = Generator[ProgressEvent, None, SyncStatus]
T = TypeVar("T")


class PhaseTimer:
    """Seconds spent in each phase of one sync, as ``ProjectSync.phase_seconds`` keeps them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._phase: str | None = None
        self._start = time.monotonic()

    def enter(self, phase: str) -> None:
        now = time.monotonic()
        if self._phase is not None:
            self.seconds[self._phase] = round(
                self.seconds.get(self._phase, 0.0) + now - self._start, 4
            )
        self._phase, self._start = phase, now


@dataclass(frozen=True)
class Attempt:
    """What every phase of one try at the head works with."""

    sync: ProjectSync
    project: Project
    repository: Repository
    gh: GitHubConnector
    timer: PhaseTimer
    full: bool
    lost_race: bool


@dataclass(frozen=True)
class Resolved:
    """What the resolve phase found: the head, and the project's current sync as read
    after it (the apply step expects the project still there)."""

    head: BranchHead
    expected_id: int | None
    current: ProjectSync | None
    download: GitDownload | None

    @property
    def same_tree(self) -> bool:
        return self.current is not None and self.current.head_tree_sha == self.head.tree_sha

    @property
    def same_commit(self) -> bool:
        return self.current is not None and self.current.head_commit_sha == self.head.commit_sha


@dataclass
class Content:
    """Where this sync's blob contents come from, for the fetch phase and the mode."""

    writer: BlobWriter
    git: GitObjects | None = None
    full: bool = False
    from_tarball: bool = False


def _finish(
    sync: ProjectSync, status: SyncStatus, stats: CallStats, message: str | None, timer: PhaseTimer
) -> None:
    timer.enter("end")
    sync.status = status
    sync.finished_at = utcnow()
    sync.api_calls = stats.calls
    sync.bytes_fetched = stats.bytes
    sync.phase_seconds = timer.seconds
    sync.error = message if status is SyncStatus.FAILED else None
    db.session.commit()


def record_finished(sync: ProjectSync) -> None:
    """Count a sync that reached its final status (metrics never fail a sync)."""
    metrics.record_sync_finished(
        status=str(sync.status),
        trigger=str(sync.trigger),
        seconds=sync.duration_seconds,
        api_calls=sync.api_calls,
    )


def run_pipeline(sync_id: int, *, stats: CallStats | None = None, full: bool = False) -> Events:
    """Bring the project of a queued ProjectSync to its branch head; yield progress.

    Returns the final status. Raises :class:`PermanentSyncError` (nothing on GitHub to
    sync) and retryable errors without recording them; :func:`execute_sync` records.
    """
    stats = stats if stats is not None else CallStats()
    sync = db.session.get(ProjectSync, sync_id)
    if sync is None:
        raise ValueError(f"no ProjectSync {sync_id}")
    if sync.status.is_final:
        return sync.status
    if sync.trigger is SyncTrigger.RESTORE:
        from sync_jobs.restore import run_restore

        return (yield from run_restore(sync))
    project = db.session.get_one(Project, sync.project_id)
    repository = db.session.get_one(Repository, project.repository_id)
    timer = PhaseTimer()
    sync.status = SyncStatus.RUNNING
    sync.started_at = sync.started_at or utcnow()
    db.session.commit()
    if repository.removed_at is not None or repository.installation is None:
        raise RepositoryNotFoundError(
            f"Repository {repository.full_name} was removed from the App's installation; "
            "add it back to sync this project again."
        )
    config = current_app.config
    with GitHubConnector(
        base_url=config["GITHUB_API_URL"],
        app_id=config.get("APP_ID"),
        private_key=config.get("PRIVATE_KEY"),
        redis=redis_connection(),
        installation_id=repository.installation.github_id,
        full_name=repository.full_name,
        # Not a documented setting: tests shorten it to meet injected hangs quickly.
        timeout=config.get("SYNC_HTTP_TIMEOUT_SECONDS", defaults.HTTP_TIMEOUT_SECONDS),
    ) as gh:
        gh.stats = stats
        return (yield from _retrying_races(sync, project, repository, gh, timer, full=full))


def _retrying_races(
    sync: ProjectSync,
    project: Project,
    repository: Repository,
    gh: GitHubConnector,
    timer: PhaseTimer,
    *,
    full: bool,
) -> Events:
    """Try again from the resolve phase when another sync moved the project first."""
    for attempt in range(defaults.APPLY_RACE_RETRIES):
        try:
            lost_race = attempt > 0
            return (
                yield from _attempt(
                    Attempt(sync, project, repository, gh, timer, full=full, lost_race=lost_race)
                )
            )
        except LostRaceError as exc:
            log.info("sync %s lost the apply race (%s); recomputing", sync.id, exc)
            db.session.expire_all()
    raise LostRaceError(f"sync {sync.id} lost the apply race {defaults.APPLY_RACE_RETRIES} times")


def _attempt(attempt: Attempt) -> Events:
    """One try: resolve the head; unless its tree is synced, diff and fetch; apply."""
    resolved = yield from _resolve(attempt)
    plan = _plan(attempt, resolved)
    if resolved.same_tree and not attempt.full:
        if resolved.same_commit:
            return _end_noop(attempt)
        # A new commit with the same tree: record it in the lineage, nothing to write.
        plan.total_files = count_files(attempt.project.id)
    else:
        content = yield from _diff(attempt, resolved, plan)
        yield from _fetch(attempt, plan, content, resolved.head)
    return (yield from _apply(attempt, plan))


def _resolve(attempt: Attempt) -> Generator[ProgressEvent, None, Resolved]:
    """The branch head, read now, and the current sync.

    Over git (when configured) ls-refs names the head and the pack's commit its tree,
    or, for a sync its push alone asked for, the push's ``after`` is fetched at once
    (:func:`~sync_jobs.git_fetch.start_git_fetch` says when that is safe); the REST
    read is the fallback.
    """
    sync, project, gh = attempt.sync, attempt.project, attempt.gh
    attempt.timer.enter("resolve")
    yield ProgressEvent(Phase.RESOLVE, 0, 1, f"reading the head of {project.branch}")
    pushed = (
        PushedHead(sync.pushed_before, sync.pushed_after)
        if sync.pushed_before and sync.pushed_after
        else None
    )
    download = start_git_fetch(gh, project, pushed=pushed)
    head = (yield from head_over_git(download, attempt.repository.id)) or gh.branch_head(
        project.branch
    )
    db.session.refresh(project)
    if download is not None and download.want is not None and head.commit_sha == download.want:
        # A head no read of the branch confirmed (a webhook with a leaked secret could
        # name any commit): the drift reconciler's next poll reads the branch in full
        # instead of trusting a 304 for the head it read before.
        project.branch_etag = None
    expected_id = project.current_sync_id
    current = db.session.get(ProjectSync, expected_id) if expected_id is not None else None
    yield ProgressEvent(Phase.RESOLVE, 1, 1, f"head {head.commit_sha[:12]}")
    sync.head_commit_sha, sync.head_tree_sha = head.commit_sha, head.tree_sha
    sync.base_commit_sha = current.head_commit_sha if current else None
    return Resolved(head, expected_id, current, download)


def _plan(attempt: Attempt, resolved: Resolved) -> ApplyPlan:
    """The apply step's plan before the diff: a no-op to the head."""
    head = resolved.head
    return ApplyPlan(
        sync_id=attempt.sync.id,
        project_id=attempt.project.id,
        repository_id=attempt.repository.id,
        expected_current_id=resolved.expected_id,
        delta=Delta(),
        head_commit_sha=head.commit_sha,
        head_tree_sha=head.tree_sha,
        base_commit_sha=attempt.sync.base_commit_sha,
        total_files=0,
        mode=SyncMode.NOOP,
    )


def _end_noop(attempt: Attempt) -> SyncStatus:
    """The head is the current sync's: nothing to write (superseded after a lost race)."""
    status = SyncStatus.SUPERSEDED if attempt.lost_race else SyncStatus.SUCCEEDED
    attempt.sync.mode = SyncMode.NOOP
    _finish(attempt.sync, status, attempt.gh.stats, None, attempt.timer)
    return status


def _diff(
    attempt: Attempt, resolved: Resolved, plan: ApplyPlan
) -> Generator[ProgressEvent, None, Content]:
    """The delta to the head: a Merkle walk from the current tree, or the whole tree
    when a delta is not possible (the reason is logged and recorded)."""
    attempt.timer.enter("diff")
    current_tree = resolved.current.head_tree_sha if resolved.current else None
    reason = delta_blocker(
        DeltaBase(
            current_sync_id=plan.expected_current_id,
            current_tree_sha=current_tree,
            current_tree_stored=current_tree is not None
            and _tree_stored(attempt.repository.id, current_tree),
            full_requested=attempt.full,
        )
    )
    max_bytes = current_app.config["SYNC_MAX_BLOB_BYTES"]
    content = Content(BlobWriter(attempt.repository.id, max_bytes=max_bytes))
    # Git's smart HTTP first when configured: one pack of the new trees and blobs;
    # None means the REST path below runs (the reason was logged).
    content.git = yield from objects_over_git(
        attempt.gh, content.writer, resolved.head, resolved.download
    )
    if reason is None:
        walk, source = yield from _delta_walk(attempt, resolved.head, current_tree, plan, content)
    else:
        walk, source = yield from _full_walk(attempt, resolved.head, reason, plan, content)
    store_trees(attempt.repository.id, source.to_store(walk.new_tree_shas))
    yield ProgressEvent(Phase.DIFF, 1, 1, _describe(plan.delta))
    return content


def _delta_walk(
    attempt: Attempt, head: BranchHead, current_tree: str | None, plan: ApplyPlan, content: Content
) -> Generator[ProgressEvent, None, tuple[MerkleWalk, TreeSource]]:
    """Walk from the current tree to the head's, opening only the trees that differ."""
    project = attempt.project
    yield ProgressEvent(Phase.DIFF, 0, 1, "comparing trees (delta)")
    walk = MerkleWalk(current_tree, head.tree_sha)
    known_files = count_files(project.id)
    source = TreeSource(
        attempt.gh, attempt.repository.id, size_hint=stored_sizes(project.id, known_files)
    )
    source.add(content.git.trees.trees if content.git else {})
    source.drive(walk)
    plan.delta = walk.delta()
    plan.total_files = known_files + len(plan.delta.opened) - len(plan.delta.closed_paths)
    return walk, source


def _full_walk(
    attempt: Attempt, head: BranchHead, reason: str, plan: ApplyPlan, content: Content
) -> Generator[ProgressEvent, None, tuple[MerkleWalk, TreeSource]]:
    """List the head's whole tree and diff it against the stored files."""
    project, repository = attempt.project, attempt.repository
    log.info("full sync of project %s: %s", project.id, reason)
    plan.full_sync_reason, content.full = reason, True
    walk = MerkleWalk(None, head.tree_sha)
    if content.git is None and not has_any_blob(repository.id):
        # Nothing stored for this repository: everything is needed, and one archive is
        # cheaper than any listing plus blob calls.
        source = yield from _tarball_trees(attempt, head, content)
    else:
        hint = stored_sizes(project.id, count_files(project.id))
        source = TreeSource(attempt.gh, repository.id, size_hint=hint)
        source.add(content.git.trees.trees if content.git else {})
    yield ProgressEvent(Phase.DIFF, 0, 1, "listing the tree (full)")
    # After a tarball only the trees that differ from it (submodules, export
    # attributes) are missing: the walk fetches just those.
    source.drive(walk)
    new_files = walk.new_files()
    plan.delta = diff_flat(current_files(project.id), new_files)
    plan.head_files = new_files
    plan.total_files = len(new_files)
    return walk, source


def _tarball_trees(
    attempt: Attempt, head: BranchHead, content: Content
) -> Generator[ProgressEvent, None, TreeSource]:
    """Every blob from one archive, and the trees built from its listing (its download
    counts as fetch time)."""
    attempt.timer.enter("fetch")
    yield ProgressEvent(Phase.FETCH, 0, 0, "downloading the tarball")
    flat = yield from _tarball(attempt.gh, content.writer, head.commit_sha, None, 0)
    root, trees = build_trees(flat)
    if root != head.tree_sha:
        log.info(
            "tarball tree %s differs from %s (submodules, export-ignore or "
            "export-subst); walking the differing trees",
            root,
            head.tree_sha,
        )
    source = TreeSource(attempt.gh, attempt.repository.id, size_hint=listed_sizes(flat))
    source.add(trees)
    content.from_tarball = True
    attempt.timer.enter("diff")
    return source


def _fetch(
    attempt: Attempt, plan: ApplyPlan, content: Content, head: BranchHead
) -> Generator[ProgressEvent, None, None]:
    """Store the content of the delta's blobs not stored yet: one tarball or blob calls,
    whichever :func:`choose_fetch` says is faster; then name the sync's mode."""
    attempt.timer.enter("fetch")
    # A full sync wants every blob of the head that is not stored, changed or not
    # (a blob stored without content by older rules was deleted to be fetched again).
    wanted_files = plan.delta.opened if plan.head_files is None else plan.head_files.items()
    needed = {entry.sha: entry.size for _path, entry in wanted_files if entry.has_blob}
    stored = stored_blob_shas(attempt.repository.id, needed)
    missing = {sha: size for sha, size in needed.items() if sha not in stored}
    if choose_fetch(len(missing), plan.total_files, FETCH_COSTS) is FetchStrategy.TARBALL:
        wanted = set(missing)
        yield ProgressEvent(
            Phase.FETCH, 0, plan.total_files, f"downloading the tarball for {len(missing):,} files"
        )
        yield from _tarball(attempt.gh, content.writer, head.commit_sha, wanted, plan.total_files)
        missing = {sha: missing[sha] for sha in wanted}  # what the archive lacked
        content.from_tarball = True
    if missing:
        yield ProgressEvent(Phase.FETCH, 0, len(missing), f"fetching {len(missing):,} files")
        yield from _fetch_events(fetch_blobs(attempt.gh, content.writer, missing), "fetching")
    over_git = content.git is not None
    plan.mode = SyncMode.of(
        full=content.full,
        git=over_git,
        tarball=content.from_tarball,
        # Over git: blob calls for what the pack lacked; over REST: any content needed.
        blobs=bool(missing) if over_git else bool(needed),
    )


def _apply(attempt: Attempt, plan: ApplyPlan) -> Events:
    """Write the new state in one transaction (:func:`apply_sync`)."""
    timer, changes = attempt.timer, len(plan.delta.changes)
    timer.enter("apply")
    yield ProgressEvent(Phase.APPLY, 0, changes, "writing the new state")
    timer.enter("end")
    plan.api_calls, plan.bytes_fetched = attempt.gh.stats.calls, attempt.gh.stats.bytes
    plan.phase_seconds = dict(timer.seconds)
    started = time.monotonic()
    apply_sync(plan)
    db.session.expire_all()
    attempt.sync.phase_seconds = {
        **plan.phase_seconds,
        "apply": round(time.monotonic() - started, 4),
    }
    db.session.commit()
    yield ProgressEvent(Phase.APPLY, changes, changes, _describe(plan.delta))
    return SyncStatus.SUCCEEDED


def _tarball(
    gh: GitHubConnector, writer: BlobWriter, commit_sha: str, wanted: set[str] | None, expected: int
) -> Generator[ProgressEvent, None, Any]:
    fetch = read_tarball(gh, writer, commit_sha, wanted=wanted, expected_files=expected)
    return (yield from _fetch_events(fetch, "reading the tarball"))


def _fetch_events(fetch: FetchProgress[T], source: str) -> Generator[ProgressEvent, None, T]:
    """A fetch's progress as events, published while the content still arrives."""
    while True:
        try:
            step = next(fetch)
        except StopIteration as stop:
            return stop.value
        message = describe_fetch(files=step.files, total=step.total, size=step.bytes, source=source)
        yield ProgressEvent(Phase.FETCH, step.files, step.total, message, bytes=step.bytes)


def _tree_stored(repository_id: int, sha: str) -> bool:
    return (
        db.session.scalar(
            select(GitTree.id).where(GitTree.repository_id == repository_id, GitTree.sha == sha)
        )
        is not None
    )


def _describe(delta: Delta) -> str:
    from sync_jobs.core.diff import ChangeKind

    parts = [f"{delta.count(kind)} {kind}" for kind in ChangeKind if delta.count(kind)]
    if delta.renames:
        parts.append(f"{len(delta.renames)} renamed")
    return ", ".join(parts) or "no changes"


def execute_sync(
    sync_id: int,
    *,
    full: bool = False,
    on_event: Callable[[ProgressEvent], None] | None = None,
    guard: Callable[[], None] | None = None,
) -> None:
    """Run one claimed sync to its end and record the outcome (see the module docstring).

    ``on_event`` sees every event as well (the CLI draws its progress bar with it).
    ``guard`` is called before the pipeline goes on after each event, so it can stop
    the sync (by raising) before the apply step, which runs after its first event.
    """
    publisher = _publisher(sync_id)
    stats = CallStats()
    status = SyncStatus.FAILED
    try:
        pipeline = run_pipeline(sync_id, stats=stats, full=full)
        while True:
            try:
                event = next(pipeline)
                publisher.publish(event)
                if on_event is not None:
                    on_event(event)
                if guard is not None:
                    guard()
            except StopIteration as stop:
                status = stop.value
                break
    except PermanentSyncError as exc:
        db.session.rollback()
        _record(sync_id, SyncStatus.FAILED, str(exc), stats)
        failed = ProgressEvent(Phase.DONE, 1, 1, str(exc), outcome=SyncStatus.FAILED)
        publisher.publish(failed, force=True)
        if on_event is not None:
            on_event(failed)
        return
    except BaseException as exc:
        discard_session()
        message = f"{exc or type(exc).__name__} (will be retried)"
        publisher.publish(ProgressEvent(Phase.RETRY, 0, 0, message), force=True)
        raise
    sync = db.session.get_one(ProjectSync, sync_id)
    record_finished(sync)
    message = {
        SyncStatus.SUCCEEDED: f"synced {sync.head_commit_sha or ''}".strip(),
        SyncStatus.SUPERSEDED: "another sync already brought the project to this head",
    }.get(status, status.value)
    final = ProgressEvent(Phase.DONE, 1, 1, message, outcome=status)
    publisher.publish(final, force=True)
    if on_event is not None:
        on_event(final)


def _publisher(sync_id: int) -> ProgressPublisher:
    """The sync's publisher; its project's pages follow its events too."""
    sync = db.session.get(ProjectSync, sync_id)
    project_id = sync.project_id if sync is not None else None
    return ProgressPublisher(redis_connection(), sync_id=sync_id, project_id=project_id)


def _record(sync_id: int, status: SyncStatus, message: str, stats: CallStats) -> None:
    sync = db.session.get(ProjectSync, sync_id)
    if sync is None:
        return
    sync.status = status
    sync.error = message
    sync.api_calls = stats.calls
    sync.bytes_fetched = stats.bytes
    sync.retry_at = None
    sync.waiting_reason = None
    if status.is_final:
        sync.finished_at = utcnow()
    db.session.commit()
    if status.is_final:
        record_finished(sync)


def mark_failed(sync_id: int, message: str) -> None:
    """For the job layer: a retryable failure that ran out of retries becomes final."""
    _record(sync_id, SyncStatus.FAILED, message, CallStats())
    final = ProgressEvent(Phase.DONE, 1, 1, message, outcome=SyncStatus.FAILED)
    _publisher(sync_id).publish(final, force=True)

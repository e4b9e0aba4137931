"""Tracked branches (projects) and the lineage of their syncs."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

from models.base import GitSha, Model, db, str_enum, utcnow
from models.enums import StopKind, SyncMode, SyncStatus, SyncTrigger

if TYPE_CHECKING:
    from models.github import Repository


class Project(Model):
    """One tracked (repository, branch): the unit that is synced and shown."""

    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("repository_id", "branch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repository.id", ondelete="CASCADE"), index=True
    )
    branch: Mapped[str] = mapped_column(String(255))
    # Off: pushes only record the branch's new head (so memory can be shown behind);
    # no sync starts until a person asks or turns it back on.
    auto_sync: Mapped[bool] = mapped_column(default=True)
    # Untracking is a soft delete: the project leaves every list and stops syncing, its
    # history stays, and tracking the same branch again brings the row back.
    tracked: Mapped[bool] = mapped_column(default=True, server_default=true())
    untracked_at: Mapped[datetime | None]
    # The latest applied sync. It moves only by compare-and-set in the apply step, so two
    # workers can never both extend the lineage from the same predecessor.
    current_sync_id: Mapped[int | None] = mapped_column(
        ForeignKey("project_sync.id", use_alter=True, ondelete="SET NULL"), index=True
    )
    # Why the project stopped syncing: the kind for code to decide by, the reason in
    # words shown to people as is. Both None while the project syncs normally; written
    # only together, by stop() and resume().
    stop_kind: Mapped[StopKind | None] = mapped_column(
        str_enum(StopKind, length=32, check="stop_kind")
    )
    stopped_reason: Mapped[str | None] = mapped_column(Text)
    # The ETag of the last branch read by the drift reconciler: its next read is a
    # conditional request, which GitHub answers 304 without counting it against the
    # rate limit while the branch has not moved.
    branch_etag: Mapped[str | None] = mapped_column(String(255))
    reconciled_at: Mapped[datetime | None]
    # The newest branch head GitHub told us about (a push delivery or a reconcile poll)
    # and when GitHub saw it (the push's time, or the poll's), so an older delivery
    # arriving late never moves it back. Only a hint for "memory is behind"; a sync
    # always reads the head itself.
    branch_head_sha: Mapped[GitSha | None]
    branch_head_seen_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    repository: Mapped[Repository] = relationship(back_populates="projects")
    current_sync: Mapped[ProjectSync | None] = relationship(
        foreign_keys=[current_sync_id], post_update=True
    )
    syncs: WriteOnlyMapped[ProjectSync] = relationship(
        back_populates="project",
        foreign_keys="ProjectSync.project_id",
        order_by="ProjectSync.id.desc()",
        passive_deletes=True,
    )

    def stop(self, kind: StopKind, reason: str) -> bool:
        """Stop syncing for ``kind``, explained to people by ``reason``. A project
        already stopped keeps its first cause; returns whether this call stopped it."""
        if self.stopped_reason is not None:
            return False
        self.stop_kind, self.stopped_reason = kind, reason
        return True

    def resume(self) -> bool:
        """Clear the stop (kind and reason); returns whether the project was stopped."""
        if self.stopped_reason is None and self.stop_kind is None:
            return False
        self.stop_kind = self.stopped_reason = None
        return True

    def __repr__(self) -> str:
        return f"<Project {self.id} repository={self.repository_id} branch={self.branch!r}>"


class ProjectSync(Model):
    """One sync attempt of a project.

    Successful syncs form the project's lineage: each links to its predecessor through
    ``previous_sync_id``, which is unique, so the lineage is a single chain and can
    never fork. ``sequence`` is the position in that chain (1 for the first successful
    sync); versioned rows (files, memory entries) are compared by it to answer "what
    was the state at sync N" with one indexed range query instead of a recursive walk.
    """

    __tablename__ = "project_sync"
    __table_args__ = (UniqueConstraint("project_id", "sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    trigger: Mapped[SyncTrigger] = mapped_column(str_enum(SyncTrigger))
    status: Mapped[SyncStatus] = mapped_column(str_enum(SyncStatus), default=SyncStatus.QUEUED)
    # X-GitHub-Delivery of the webhook that asked for this sync, if one did.
    delivery_id: Mapped[str | None] = mapped_column(String(64))
    rq_job_id: Mapped[str | None] = mapped_column(String(128), index=True)
    # Asked to compare every file instead of the stored trees (``sync --full``, the API's
    # ``{"full": true}``); read by the job when it starts.
    full_requested: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The push that asked for this sync, while no other request has joined it: the
    # commits it moved the branch from and to. The job fetches ``pushed_after`` without
    # asking for the branch head when ``pushed_before`` is the project's synced commit
    # (see sync_jobs.scheduling, "pushed heads").
    pushed_before: Mapped[GitSha | None]
    pushed_after: Mapped[GitSha | None]

    sequence: Mapped[int | None]
    previous_sync_id: Mapped[int | None] = mapped_column(
        ForeignKey("project_sync.id", ondelete="RESTRICT"), unique=True
    )
    restored_from_sync_id: Mapped[int | None] = mapped_column(
        ForeignKey("project_sync.id", ondelete="RESTRICT"), index=True
    )

    base_commit_sha: Mapped[GitSha | None]
    head_commit_sha: Mapped[GitSha | None]
    head_tree_sha: Mapped[GitSha | None]

    files_added: Mapped[int] = mapped_column(default=0)
    files_modified: Mapped[int] = mapped_column(default=0)
    files_removed: Mapped[int] = mapped_column(default=0)
    files_unchanged: Mapped[int] = mapped_column(default=0)
    api_calls: Mapped[int] = mapped_column(default=0)
    bytes_fetched: Mapped[int] = mapped_column(default=0)

    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Written for people: what went wrong and what to do about it.
    error: Mapped[str | None] = mapped_column(Text)
    # Run attempts started so far (a crash, a GitHub outage or a rate limit each end
    # one); the next attempt's RQ job id is derived from it.
    attempts: Mapped[int] = mapped_column(default=0)
    # While a queued sync waits to be tried again: until when, and why, in words
    # ("waiting for GitHub's rate limit until 14:05 UTC").
    retry_at: Mapped[datetime | None]
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    # How the sync ran (SyncMode: "delta", "full", "restore" or "noop", plus how content
    # came, "+blobs", "+git", ...); the database refuses any other value. And, for a
    # full sync, why a delta was not possible.
    mode: Mapped[SyncMode | None] = mapped_column(str_enum(SyncMode, length=32, check="mode"))
    full_sync_reason: Mapped[str | None] = mapped_column(Text)
    # Seconds spent in each phase (resolve, diff, fetch, apply).
    phase_seconds: Mapped[dict[str, float] | None] = mapped_column(JSON)

    project: Mapped[Project] = relationship(back_populates="syncs", foreign_keys=[project_id])
    previous_sync: Mapped[ProjectSync | None] = relationship(
        remote_side=[id], foreign_keys=[previous_sync_id]
    )
    restored_from_sync: Mapped[ProjectSync | None] = relationship(
        remote_side=[id], foreign_keys=[restored_from_sync_id]
    )

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def __repr__(self) -> str:
        return f"<ProjectSync {self.id} project={self.project_id} {self.status}>"


class SyncRequest(Model):
    """A person's request for a sync or restore made with an ``Idempotency-Key``.

    The key is unique per project, so a request repeated with the same key (a retried
    POST, a double click) finds the sync the first one got instead of starting
    another; ``parameters`` (canonical JSON) lets a reuse of the key for a different
    request be refused.
    """

    __tablename__ = "sync_request"
    __table_args__ = (UniqueConstraint("project_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # "sync" or "restore"
    parameters: Mapped[str] = mapped_column(String(255))
    sync_id: Mapped[int] = mapped_column(
        ForeignKey("project_sync.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    sync: Mapped[ProjectSync] = relationship()

    def __repr__(self) -> str:
        return f"<SyncRequest {self.key!r} project={self.project_id} sync={self.sync_id}>"


# A project's lineage in order, and its syncs newest first, are the two hot reads.
db.Index("ix_project_sync_project_id_id", ProjectSync.project_id, ProjectSync.id)
# The repair pass reads every sync that is not final yet.
db.Index("ix_project_sync_status", ProjectSync.status)

"""Closed sets of states shared by the models, the jobs and the views.

They are ``str`` Enums so that they compare equal to the strings stored in the
database and serialised in the JSON API.
"""

from __future__ import annotations

from enum import StrEnum


class SyncStatus(StrEnum):
    """Where one ProjectSync stands; ``succeeded`` syncs form the project's lineage."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"

    @property
    def is_final(self) -> bool:
        return self in (SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.SUPERSEDED)


class SyncTrigger(StrEnum):
    """Why a sync was started."""

    PUSH = "push"
    MANUAL = "manual"
    INSTALL = "install"
    RECONCILE = "reconcile"
    RESTORE = "restore"


class SyncMode(StrEnum):
    """How a sync ran (``ProjectSync.mode``): what it compared, then how content came.

    ``delta`` walked the trees from the last synced one, ``full`` listed the whole tree;
    ``+git`` the content came in a git pack (``+git+blobs``: blob calls for what the
    pack lacked), ``+tarball`` in one archive, ``+blobs`` one call per blob, nothing
    added when no content was needed. ``noop`` found the head already synced;
    ``restore`` wrote an earlier state back.
    """

    NOOP = "noop"
    RESTORE = "restore"
    DELTA = "delta"
    DELTA_BLOBS = "delta+blobs"
    DELTA_TARBALL = "delta+tarball"
    DELTA_GIT = "delta+git"
    DELTA_GIT_BLOBS = "delta+git+blobs"
    FULL = "full"
    FULL_BLOBS = "full+blobs"
    FULL_TARBALL = "full+tarball"
    FULL_GIT = "full+git"
    FULL_GIT_BLOBS = "full+git+blobs"

    @classmethod
    def of(cls, *, full: bool, git: bool, tarball: bool, blobs: bool) -> SyncMode:
        """The mode of a delta or full sync from where its content came (over git,
        ``blobs`` means calls for what the pack lacked; otherwise any content at all)."""
        source = "full" if full else "delta"
        if git:
            source += "+git+blobs" if blobs else "+git"
        elif tarball:
            source += "+tarball"
        elif blobs:
            source += "+blobs"
        return cls(source)


class StopKind(StrEnum):
    """Why a project stopped syncing (``Project.stop_kind``), for code to decide by;
    ``Project.stopped_reason`` says the same in words, for people."""

    APP_UNINSTALLED = "app_uninstalled"  # the App was uninstalled from the account
    REPOSITORY_REMOVED = "repository_removed"  # removed from the installation's repositories
    REPOSITORY_DELETED = "repository_deleted"  # deleted on GitHub
    # Transferred to an owner the App is not installed on.
    REPOSITORY_TRANSFERRED = "repository_transferred"
    BRANCH_DELETED = "branch_deleted"  # the one stop a push can undo (the branch created again)
    # A stop recorded before stops had kinds, whose reason is none of the wordings above.
    OTHER = "other"


class DeliveryStatus(StrEnum):
    """Processing state of a stored webhook delivery (the outbox)."""

    PENDING = "pending"  # stored, not yet handed to the queue (e.g. Redis was down)
    QUEUED = "queued"  # a processing job is in the queue
    PROCESSED = "processed"
    IGNORED = "ignored"  # an event or target the app does not act on; reason recorded
    FAILED = "failed"  # processing met an error that retrying cannot fix, or ran out of tries
    REJECTED = "rejected"  # signed, but the body is unusable; kept with the reason, never run

    @property
    def is_final(self) -> bool:
        return self not in (DeliveryStatus.PENDING, DeliveryStatus.QUEUED)

"""Closed sets of states shared by the models, the jobs and the views.

They are ``str`` Enums so that they compare equal to the strings stored in the
database and serialised in the JSON API.
"""

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

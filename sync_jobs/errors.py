"""The errors of syncing and processing deliveries, each named after its condition.

The web app's own conditions (settings, requests it refuses, sign-in and setup) are in
its errors module; they derive from :class:`ProjectSyncError` too."""

from __future__ import annotations


class ProjectSyncError(Exception):
    """Base of the project's own errors."""


class InvalidPayloadError(ProjectSyncError):
    """A delivery's payload holds something GitHub never sends: a field of the wrong
    JSON type, a number out of range, text a database cannot store, nesting too deep.

    The same payload fails the same way every time, so it is never retried; the
    message names the field and is stored on the delivery row as is.
    """


class SyncReservationBusyError(ProjectSyncError):
    """Another ``request_sync`` of the project reserved the pending marker and has not
    published its sync in time; the caller's job is retried."""


class DeliveryNotFoundError(ProjectSyncError):
    """A processing job names a delivery that is not stored (wrong database?)."""


class SyncError(ProjectSyncError):
    """A sync could not finish. Retryable unless it is a :class:`PermanentSyncError`."""


class PermanentSyncError(SyncError):
    """Retrying will not help until something changes on GitHub or in the settings.

    The message is written for people: it is stored on the ProjectSync row as is.
    """


class EmptyRepositoryError(PermanentSyncError):
    """The repository has no commits yet, so there is nothing to sync."""


class BranchNotFoundError(PermanentSyncError):
    """The tracked branch does not exist (deleted, or never pushed)."""


class RepositoryNotFoundError(PermanentSyncError):
    """The repository was deleted, or the installation can no longer see it."""


class AppNotConfiguredError(PermanentSyncError):
    """APP_ID or PRIVATE_KEY is missing, so the App cannot authenticate to GitHub."""


class GitHubUnavailableError(SyncError):
    """GitHub kept failing (5xx, timeouts, resets) after every retry; retry the job later."""


class RateLimitedError(SyncError):
    """GitHub's rate limit is exhausted for longer than a job should wait; retry later."""

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class LockLostError(SyncError):
    """The sync's running lock was taken over (its job was presumed dead and replaced);
    the sync stops before applying, and the job holding the lock carries on."""


class SyncBusyError(SyncError):
    """Another sync of the project is running; this one cannot start now."""


class LostRaceError(SyncError):
    """Another sync moved the project's current-sync pointer first; recompute and retry."""


class SyncDataError(SyncError):
    """What GitHub sent does not agree with itself (e.g. a blob whose SHA does not match)."""

"""Every exception Project Sync defines, each named after its condition."""

from __future__ import annotations


class ProjectSyncError(Exception):
    """Base of the project's own errors."""


class ConfigError(ProjectSyncError):
    """A setting is missing or malformed; raised at start, naming the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem


class WebhookRejectedError(ProjectSyncError):
    """A request to the webhook endpoint that is not a usable GitHub delivery.

    ``status`` is the HTTP status the receiver answers with; the message says what is
    wrong in words the sender can act on.
    """

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SignatureError(WebhookRejectedError):
    """The ``X-Hub-Signature-256`` header is missing or matches no configured secret."""

    status = 401


class MissingHeaderError(WebhookRejectedError):
    """A header GitHub always sends (``X-GitHub-Event``, ``X-GitHub-Delivery``) is absent."""


class MalformedPayloadError(WebhookRejectedError):
    """The body is not the JSON document (or form ``payload`` field) GitHub sends."""


class PayloadTooLargeError(WebhookRejectedError):
    """The body is larger than any payload GitHub sends."""

    status = 413


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


class OAuthStateError(ProjectSyncError):
    """GitHub sent a person back with a ``state`` this browser was not given (a forged or
    replayed redirect, or a session that expired mid-flow); the code is not exchanged."""


class ManifestConversionError(ProjectSyncError):
    """GitHub did not turn a manifest code into an App (expired, used, or unreachable)."""


class AppAlreadyConfiguredError(ProjectSyncError):
    """Setup would overwrite the credentials of an App already configured here; it never
    does, because the old App's key and secret would be lost with no way to recover them."""


class SignInError(ProjectSyncError):
    """GitHub refused the sign-in code or the token (expired, reused, wrong client)."""


class ApiRequestError(ProjectSyncError):
    """A request to the JSON API or a page that cannot be served as asked.

    ``status`` is the HTTP status the view answers with; the message says what is wrong
    in words the caller can act on (it becomes ``{"error": message}``).
    """

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameterError(ApiRequestError):
    """A query parameter or body field is missing or malformed."""


class UnsupportedMediaTypeError(ApiRequestError):
    """A POST to the JSON API without ``Content-Type: application/json``; requiring it
    keeps cross-site form posts (which cannot set it) from acting for a signed-in person."""

    status = 415


class CsrfTokenError(ApiRequestError):
    """A page form was posted without the session's anti-forgery token."""


class NotVisibleError(ApiRequestError):
    """The project or sync does not exist, or the person may not see it (the same answer
    for both, so ids of other people's projects are not revealed)."""

    status = 404


class ConflictError(ApiRequestError):
    """The request contradicts the current state (e.g. restoring a sync that is not in
    the project's lineage, tracking a branch that is already tracked)."""

    status = 409


class QueueUnavailableError(ApiRequestError):
    """Redis could not take the job; nothing will run until the request is repeated."""

    status = 503

"""The web app's errors: settings, requests it refuses, sign-in, setup and access.

Each is named after its condition; an error with a ``status`` is answered with that
HTTP status and its message. The errors of syncing and processing deliveries are in
``sync_jobs/errors.py``."""

from __future__ import annotations

from sync_jobs.errors import ProjectSyncError


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


class SignInRequiredError(ApiRequestError):
    """Nobody is signed in (or GitHub no longer accepts their token) and the request
    needs a person."""

    status = 401


class PermissionDeniedError(ApiRequestError):
    """The person sees the repository but GitHub does not give them the permission the
    action needs (``ACTION_PERMISSION``)."""

    status = 403


class AccessUnavailableError(ApiRequestError):
    """GitHub could not say which repositories the person may see (it did not answer,
    or answered 5xx); nothing is shown rather than a guess."""

    status = 503

    def __init__(self, message: str = "GitHub did not say which repositories you may see "
                 "just now; try again in a moment.") -> None:
        super().__init__(message)


class ProxyEventError(ProjectSyncError):
    """An event from the webhook proxy's channel holds no delivery that can be forwarded
    (``flask webhook-proxy`` skips it and says why)."""

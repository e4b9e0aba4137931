"""HTTP conditions of who may see and do what (the rest of ``ApiRequestError``'s family
lives in ``sync_jobs/errors.py``, where the API began)."""

from __future__ import annotations

from sync_jobs.errors import ApiRequestError, ProjectSyncError


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

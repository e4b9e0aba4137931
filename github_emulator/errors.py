"""Every exception the emulator raises, each named after its condition.

Handlers raise :class:`ApiError` subclasses; the HTTP layer turns them into GitHub's
error body ``{"message": ..., "documentation_url": ...}`` with the matching status.
"""

from __future__ import annotations


class EmulatorError(Exception):
    """Base of every emulator exception."""


class ApiError(EmulatorError):
    """A request GitHub would answer with an error status."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class NotFoundError(ApiError):
    """Missing object, or one the caller may not see (GitHub hides both as 404)."""

    status = 404

    def __init__(self, message: str = "Not Found") -> None:
        super().__init__(message)


class EmptyRepositoryError(ApiError):
    """Repository without any commit; GitHub answers 409 to reads of its data."""

    status = 409

    def __init__(self) -> None:
        super().__init__("Git Repository is empty.")


class UnauthorizedError(ApiError):
    """Missing, malformed, expired or unknown credentials."""

    status = 401


class ForbiddenError(ApiError):
    """Valid credentials of the wrong kind for the endpoint."""

    status = 403


class UnprocessableError(ApiError):
    """Well-formed request GitHub refuses (validation failed)."""

    status = 422


class DroppedConnectionError(EmulatorError, ConnectionResetError):
    """An injected ``reset`` or ``timeout`` fault: the request gets no answer at all.

    A ``ConnectionError`` so werkzeug hands it to the request handler's
    ``connection_dropped`` hook instead of answering 500; the emulator's handler
    (:mod:`github_emulator.server`) then resets the TCP connection.
    """


class GitCommandError(EmulatorError):
    """A git subprocess failed; the stderr is in the message."""


class UnknownRepositoryError(EmulatorError, KeyError):
    """A Python API call named a repository the emulator does not hold."""


class UnknownInstallationError(EmulatorError, KeyError):
    """A Python API call named an installation the emulator does not hold."""

"""Who may see what: the rules GitHub applies before it answers a request.

GitHub hides repositories a caller cannot see behind 404 (never 403), so a probe
cannot learn that a private repository exists; the helpers here do the same.
"""

from __future__ import annotations

from enum import IntEnum

from .auth import Caller, CallerKind
from .dispatch import Context
from .errors import ForbiddenError, NotFoundError, UnauthorizedError
from .state import ROLES, GitHubApp, Installation, RepositoryRecord


class GitAccess(IntEnum):
    """What a caller may do to a repository over git, weakest first (ordered, so a
    service's need compares with ``>=``)."""

    NONE = 0
    READ = 1  # fetch and clone
    WRITE = 2  # push


WRITE_ROLES = ROLES[ROLES.index("write"):]
"""Repository roles that may push."""


def require_app(ctx: Context) -> GitHubApp:
    """The App behind a JWT; other credentials cannot use ``/app`` endpoints."""
    if ctx.caller.kind is CallerKind.APP and ctx.caller.app is not None:
        return ctx.caller.app
    if ctx.caller.kind is CallerKind.ANONYMOUS:
        raise UnauthorizedError("Requires authentication")
    raise ForbiddenError("A JSON web token is required to access this endpoint.")


def require_installation(ctx: Context) -> Installation:
    if ctx.caller.kind is CallerKind.INSTALLATION and ctx.caller.installation is not None:
        return ctx.caller.installation
    if ctx.caller.kind is CallerKind.ANONYMOUS:
        raise UnauthorizedError("Requires authentication")
    raise ForbiddenError("This endpoint requires an installation access token.")


def require_oauth_client(ctx: Context) -> GitHubApp:
    """The App whose client id and secret came as Basic authentication."""
    if ctx.caller.kind is CallerKind.OAUTH_CLIENT and ctx.caller.app is not None:
        return ctx.caller.app
    if ctx.caller.kind is CallerKind.ANONYMOUS:
        raise UnauthorizedError("Requires authentication")
    raise NotFoundError()


def require_user(ctx: Context) -> str:
    if ctx.caller.kind is CallerKind.USER and ctx.caller.login:
        return ctx.caller.login
    if ctx.caller.kind is CallerKind.ANONYMOUS:
        raise UnauthorizedError("Requires authentication")
    raise ForbiddenError("Resource not accessible by integration")


def installation_repositories(ctx: Context, caller: Caller) -> list[RepositoryRecord]:
    """Repositories an installation token may read, narrowed if the token was."""
    assert caller.installation is not None
    visible = ctx.emulator.state.installation_repositories(caller.installation)
    if caller.token is not None and caller.token.repository_ids is not None:
        visible = [r for r in visible if r.id in caller.token.repository_ids]
    return visible


def can_see(ctx: Context, repo: RepositoryRecord) -> bool:
    caller = ctx.caller
    state = ctx.emulator.state
    if caller.kind is CallerKind.INSTALLATION:
        return repo in installation_repositories(ctx, caller)
    if caller.kind is CallerKind.USER and caller.login:
        return not repo.private or any(
            repo in state.installation_repositories(i)
            for i in state.installations_for_user(caller.login))
    return not repo.private


def visible_repository(ctx: Context, owner: str, name: str) -> RepositoryRecord:
    """The repository, or 404 when it is missing or hidden from this caller."""
    if ctx.caller.kind is CallerKind.APP:
        raise ForbiddenError("A JWT cannot read repository contents; use an "
                             "installation access token.")
    repo = ctx.emulator.state.find_repository(owner, name)
    if repo is None or not can_see(ctx, repo):
        raise NotFoundError()
    return repo


def git_access(ctx: Context, caller: Caller, repo: RepositoryRecord | None) -> GitAccess:
    """GitHub's rule for git over HTTP: anyone reads a public repository; an
    installation reads what it sees and writes with ``contents: write``; a person
    writes with a write role or more and reads with any role."""
    if repo is None:
        return GitAccess.NONE
    public_read = GitAccess.NONE if repo.private else GitAccess.READ
    if caller.kind is CallerKind.INSTALLATION and caller.installation is not None:
        if (caller.installation.suspended_at is not None
                or repo not in installation_repositories(ctx, caller)):
            return public_read
        granted = (caller.token.permissions if caller.token and caller.token.permissions
                   else caller.installation.permissions)
        return GitAccess.WRITE if granted.get("contents") == "write" else GitAccess.READ
    if caller.kind is CallerKind.USER and caller.login:
        role = ctx.emulator.state.repository_role(caller.login, repo)
        if role in WRITE_ROLES:
            return GitAccess.WRITE
        return GitAccess.READ if role is not None else public_read
    return public_read

"""git's smart HTTP at GitHub's URLs: clone, fetch and push with a real git client.

``GET /<owner>/<repo>.git/info/refs?service=git-upload-pack|git-receive-pack`` and
``POST /<owner>/<repo>.git/git-upload-pack|git-receive-pack`` (also without ``.git``),
answered by git's own http-backend (:mod:`github_emulator.http_backend`) once the
caller passed GitHub's checks:

- credentials come as HTTP Basic with a token as the password (an installation token
  with the username ``x-access-token``, a personal or OAuth user token with any);
- a public repository may be fetched without credentials; anything else without them,
  or with credentials that are not a live token, is 401 with
  ``WWW-Authenticate: Basic realm="GitHub"`` so git asks its credential helper;
- a caller who may not see the repository gets 404 "Repository not found.", one who
  may read but not push gets 403, in plain text that git shows after ``remote:``.

A push runs the repository's post-receive hook like a local push does, which sends the
``push`` webhooks before git exits, attributed to the person (or the App's bot).
"""

from __future__ import annotations

from werkzeug.wrappers import Response

from . import defaults, http_backend
from .access import GitAccess, git_access
from .auth import Caller, CallerKind, identify_git
from .dispatch import Context, Route, Surface
from .errors import UnauthorizedError
from .hooks import PUSHER_ENV
from .state import RepositoryRecord

SERVICES = {"git-upload-pack": GitAccess.READ, "git-receive-pack": GitAccess.WRITE}
"""The two smart HTTP services and the access each needs."""

BAD_CREDENTIALS = ("Invalid username or token. Password authentication is not "
                   "supported for Git operations.")


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status=status, headers=headers,
                    content_type="text/plain; charset=utf-8")


def _challenge(message: str) -> Response:
    """401 with the Basic challenge git answers by asking for a username and token."""
    return _text(401, message, {
        "WWW-Authenticate": f'Basic realm="{defaults.GIT_AUTH_REALM}"'})


def _pusher(ctx: Context, caller: Caller) -> str:
    """Who a push is attributed to: the person, or ``<app-slug>[bot]`` for an App."""
    if caller.kind is CallerKind.INSTALLATION and caller.installation is not None:
        app = ctx.emulator.state.apps.get(caller.installation.app_id)
        return f"{app.slug if app else 'app'}[bot]"
    return caller.login or ""


def _authorise(ctx: Context, owner: str, name: str, service: str
               ) -> tuple[RepositoryRecord, Caller] | Response:
    """The repository and caller when ``service`` is allowed, else GitHub's refusal."""
    try:
        caller = identify_git(ctx.emulator.state, ctx.request.headers.get("Authorization"),
                              ctx.request.remote_addr or "")
    except UnauthorizedError:
        return _challenge(BAD_CREDENTIALS)
    record = ctx.emulator.state.find_repository(owner, name.removesuffix(".git"))
    access = git_access(ctx, caller, record)
    if record is not None and access >= SERVICES[service]:
        return record, caller
    if not caller.authenticated:
        return _challenge("Authentication required: use a token as the password.")
    if record is None or access is GitAccess.NONE:
        return _text(404, "Repository not found.")
    return _text(403, f"Permission to {record.full_name}.git denied to "
                      f"{_pusher(ctx, caller)}.")


def _serve(ctx: Context, owner: str, repo: str, service: str, path_tail: str) -> Response:
    allowed = _authorise(ctx, owner, repo, service)
    if isinstance(allowed, Response):
        return allowed
    record, caller = allowed
    extra = {}
    if caller.authenticated:
        extra = {"REMOTE_USER": _pusher(ctx, caller), PUSHER_ENV: _pusher(ctx, caller)}
    return http_backend.serve(ctx.request, git_dir=ctx.emulator.state.repository_path(record),
                              path_tail=path_tail, extra_env=extra)


def info_refs(ctx: Context, owner: str, repo: str) -> Response:
    """The ref advertisement (v0) or capability advertisement (v2) of a service."""
    service = ctx.request.args.get("service", "")
    if service not in SERVICES:
        return _text(403, "The dumb HTTP protocol is not supported: use git 1.6.6 or "
                          "later, which asks for ?service=git-upload-pack.")
    return _serve(ctx, owner, repo, service, "info/refs")


def upload_pack(ctx: Context, owner: str, repo: str) -> Response:
    """``ls-refs`` and ``fetch`` (v2) or want/have negotiation (v0): clone and fetch."""
    return _serve(ctx, owner, repo, "git-upload-pack", "git-upload-pack")


def receive_pack(ctx: Context, owner: str, repo: str) -> Response:
    """A push: ref updates and their pack, then the post-receive hook."""
    return _serve(ctx, owner, repo, "git-receive-pack", "git-receive-pack")


ROUTES = [
    Route("GET", "/<owner>/<repo>/info/refs", info_refs, Surface.GIT),
    Route("POST", "/<owner>/<repo>/git-upload-pack", upload_pack, Surface.GIT),
    Route("POST", "/<owner>/<repo>/git-receive-pack", receive_pack, Surface.GIT),
]

"""REST endpoints that read repository data straight from the bare git repository:
repository, branches, refs, commits, trees, blobs, comparisons and tarballs."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.utils import redirect

from . import defaults, git_shapes, shapes
from .access import visible_repository
from .dispatch import Context, Route, json_response
from .errors import EmptyRepositoryError, NotFoundError
from .gitstore import SHA_PATTERN, GitStore
from .state import RepositoryRecord


def _open(ctx: Context, owner: str, repo: str, *, allow_empty: bool = False
          ) -> tuple[RepositoryRecord, GitStore, str, str]:
    """Repository, its git store, and its API and web URLs; 409 if it has no commit
    and the endpoint reads git data (GitHub's "Git Repository is empty.")."""
    record = visible_repository(ctx, owner, repo)
    git = ctx.emulator.git(record)
    if not allow_empty and git.is_empty():
        raise EmptyRepositoryError()
    return (record, git, f"{ctx.base}/repos/{record.full_name}",
            f"{ctx.base}/{record.full_name}")


def _commit_sha(git: GitStore, ref: str) -> str:
    """A branch, tag or SHA (full or abbreviated) to a commit SHA, or 404."""
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        sha = git.resolve(candidate)
        if sha is not None:
            return sha
    raise NotFoundError(f"No commit found for SHA: {ref}")


def get_repository(ctx: Context, owner: str, repo: str) -> Any:
    record = visible_repository(ctx, owner, repo)
    return shapes.repository(ctx.base, record)


def list_branches(ctx: Context, owner: str, repo: str) -> Any:
    _, git, api, _ = _open(ctx, owner, repo, allow_empty=True)
    page, headers = ctx.paginate(git.branches())
    return json_response([git_shapes.short_branch(api, name, sha) for name, sha in page],
                         headers=headers)


def get_branch(ctx: Context, owner: str, repo: str, branch: str) -> Any:
    _, git, api, html = _open(ctx, owner, repo)
    sha = git.resolve(f"refs/heads/{branch}")
    if sha is None:
        raise NotFoundError("Branch not found")
    return git_shapes.branch(api, html, branch, git.read_commit(sha))


def get_ref(ctx: Context, owner: str, repo: str, ref: str) -> Any:
    _, git, api, _ = _open(ctx, owner, repo)
    sha = dict(git.refs()).get(f"refs/{ref}")
    if sha is None:
        raise NotFoundError()
    return git_shapes.ref(api, f"refs/{ref}", sha)


def list_refs(ctx: Context, owner: str, repo: str, prefix: str = "") -> Any:
    """``git/refs`` and ``git/refs/heads``: every ref under the prefix; an exact
    match answers the single object, as GitHub's legacy form does."""
    _, git, api, _ = _open(ctx, owner, repo)
    wanted = f"refs/{prefix}" if prefix else "refs/"
    refs = git.refs()
    exact = [(name, sha) for name, sha in refs if name == wanted]
    if exact:
        return git_shapes.ref(api, *exact[0])
    found = [(name, sha) for name, sha in refs
             if name.startswith(wanted.rstrip("/") + "/")]
    if not found:
        raise NotFoundError()
    page, headers = ctx.paginate(found)
    return json_response([git_shapes.ref(api, name, sha) for name, sha in page],
                         headers=headers)


def matching_refs(ctx: Context, owner: str, repo: str, prefix: str) -> Any:
    """``git/matching-refs/{ref}``: refs starting with the prefix, always a list."""
    _, git, api, _ = _open(ctx, owner, repo)
    wanted = f"refs/{prefix}"
    found = [(name, sha) for name, sha in git.refs() if name.startswith(wanted)]
    return [git_shapes.ref(api, name, sha) for name, sha in found]


def get_git_commit(ctx: Context, owner: str, repo: str, sha: str) -> Any:
    _, git, api, html = _open(ctx, owner, repo)
    if git.object_type(sha) != "commit":
        raise NotFoundError()
    return git_shapes.git_commit(api, html, git.read_commit(sha))


def get_commit(ctx: Context, owner: str, repo: str, ref: str) -> Any:
    _, git, api, html = _open(ctx, owner, repo)
    commit = git.read_commit(_commit_sha(git, ref))
    parent = commit.parents[0] if commit.parents else None
    files = git.diff(parent, commit.sha, renames=True)[:defaults.COMMIT_FILES_MAX]
    return git_shapes.commit(api, html, commit, files)


def get_tree(ctx: Context, owner: str, repo: str, sha: str) -> Any:
    _, git, api, _ = _open(ctx, owner, repo)
    tree_sha = git.resolve(sha, "tree") if SHA_PATTERN.match(sha) else None
    if tree_sha is None and not SHA_PATTERN.match(sha):
        branch_sha = git.resolve(f"refs/heads/{sha}") or git.resolve(f"refs/tags/{sha}")
        tree_sha = git.resolve(branch_sha, "tree") if branch_sha else None
    if tree_sha is None:
        raise NotFoundError()
    recursive = ctx.request.args.get("recursive", "") not in ("", "0", "false")
    knobs = ctx.emulator.knobs
    return git_shapes.tree(api, tree_sha, git.read_tree(tree_sha, recursive=recursive),
                           max_entries=knobs.tree_max_entries,
                           max_bytes=knobs.tree_max_bytes)


def get_blob(ctx: Context, owner: str, repo: str, sha: str) -> Any:
    _, git, api, _ = _open(ctx, owner, repo)
    if git.object_type(sha) != "blob":
        raise NotFoundError()
    return git_shapes.blob(api, sha, git.read_blob(sha))


def compare(ctx: Context, owner: str, repo: str, basehead: str) -> Any:
    _, git, api, html = _open(ctx, owner, repo)
    base_ref, separator, head_ref = basehead.partition("...")
    if not separator:
        raise NotFoundError()
    base_sha, head_sha = _commit_sha(git, base_ref), _commit_sha(git, head_ref)
    merge_base_sha = git.merge_base(base_sha, head_sha)
    if merge_base_sha is None:
        raise NotFoundError(f"No common ancestor between {base_ref} and {head_ref}.")
    commits = git.rev_list(head_sha, f"^{merge_base_sha}",
                           limit=defaults.COMPARE_COMMITS_MAX)
    return git_shapes.comparison(
        api, html, base=git.read_commit(base_sha), head=git.read_commit(head_sha),
        merge_base=git.read_commit(merge_base_sha),
        ahead_by=git.count(head_sha, f"^{merge_base_sha}"),
        behind_by=git.count(base_sha, f"^{merge_base_sha}"),
        commits=[git.read_commit(sha) for sha in commits],
        files=git.diff(merge_base_sha, head_sha, renames=True)[:defaults.COMMIT_FILES_MAX],
        basehead=basehead)


def tarball(ctx: Context, owner: str, repo: str, ref: str | None = None) -> Any:
    """302 to a one-off archive URL, as GitHub redirects to codeload."""
    record, git, _, _ = _open(ctx, owner, repo)
    sha = _commit_sha(git, ref or record.default_branch)
    key = secrets.token_urlsafe(16)
    expires = datetime.now(UTC) + timedelta(seconds=defaults.ARCHIVE_LINK_TTL_SECONDS)
    with ctx.emulator.state.lock:
        ctx.emulator.state.archive_links[key] = (record.id, sha, expires)
    location = f"{ctx.base}/_codeload/{record.full_name}/legacy.tar.gz/{sha}?token={key}"
    return redirect(location, code=302)


REPO = "/repos/<owner>/<repo>"
ROUTES = [
    Route("GET", REPO, get_repository),
    Route("GET", f"{REPO}/branches", list_branches),
    Route("GET", f"{REPO}/branches/<path:branch>", get_branch),
    Route("GET", f"{REPO}/git/ref/<path:ref>", get_ref),
    Route("GET", f"{REPO}/git/refs", list_refs),
    Route("GET", f"{REPO}/git/refs/<path:prefix>", list_refs),
    Route("GET", f"{REPO}/git/matching-refs/<path:prefix>", matching_refs),
    Route("GET", f"{REPO}/git/commits/<sha>", get_git_commit),
    Route("GET", f"{REPO}/commits/<path:ref>", get_commit),
    Route("GET", f"{REPO}/git/trees/<path:sha>", get_tree),
    Route("GET", f"{REPO}/git/blobs/<sha>", get_blob),
    Route("GET", f"{REPO}/compare/<path:basehead>", compare),
    Route("GET", f"{REPO}/tarball", tarball),
    Route("GET", f"{REPO}/tarball/<path:ref>", tarball),
]

"""JSON shapes of accounts, repositories, Apps and installations, as GitHub sends them.

REST answers and webhook payloads share these builders so a repository looks the
same wherever it appears. Each takes the emulator's base URL because GitHub's
bodies are full of absolute links; the API and web origins are the same here.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .state import ROLE_PERMISSIONS, Account, GitHubApp, Installation, RepositoryRecord

JSON = dict[str, Any]


def iso(moment: datetime | None) -> str | None:
    """GitHub's timestamp format: UTC with a ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    """Opaque global id; only its stability matters to clients."""
    return base64.b64encode(f"{kind}:{number}".encode()).decode().rstrip("=")


def user(base: str, account: Account) -> JSON:
    """``simple-user``: the owner, sender or pusher object."""
    api = f"{base}/users/{account.login}"
    return {
        "login": account.login, "id": account.id,
        "node_id": node_id("U" if account.type == "User" else "O", account.id),
        "avatar_url": f"{base}/avatars/{account.login}", "gravatar_id": "",
        "url": api, "html_url": f"{base}/{account.login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs", "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": account.type, "user_view_type": "public", "site_admin": False,
    }


def private_user(base: str, account: Account, *, repositories: int) -> JSON:
    """``private-user``: what ``GET /user`` shows the signed-in person."""
    return {
        **user(base, account), "name": account.name or account.login,
        "company": None, "blog": "", "location": None, "email": account.email,
        "hireable": None, "bio": None, "twitter_username": None,
        "public_repos": repositories, "public_gists": 0, "followers": 0, "following": 0,
        "created_at": iso(account.created_at), "updated_at": iso(account.created_at),
        "private_gists": 0, "total_private_repos": 0, "owned_private_repos": 0,
        "disk_usage": 0, "collaborators": 0, "two_factor_authentication": True,
    }


_REPO_URL_SUFFIXES = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}", "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}", "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors", "deployments_url": "/deployments",
    "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
    "languages_url": "/languages", "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers", "subscription_url": "/subscription",
    "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
}


def repository(base: str, repo: RepositoryRecord, *, webhook: bool = False,
               role: str = "read") -> JSON:
    """``full-repository``; webhooks add ``visibility`` and ``topics`` and, for push,
    integer timestamps (see :func:`push_repository`). ``permissions`` shows ``role``,
    the caller's role on it (read unless a person's listing says otherwise)."""
    api = f"{base}/repos/{repo.full_name}"
    html = f"{base}/{repo.full_name}"
    host = base.split("://", 1)[-1]
    body: JSON = {
        "id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name,
        "full_name": repo.full_name, "private": repo.private,
        "owner": user(base, repo.owner), "html_url": html,
        "description": repo.description, "fork": False, "url": api,
        **{key: api + suffix for key, suffix in _REPO_URL_SUFFIXES.items()},
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host.split(':')[0]}:{repo.full_name}.git",
        "clone_url": f"{html}.git", "svn_url": html, "mirror_url": None,
        "homepage": None, "language": None, "forks_count": 0, "stargazers_count": 0,
        "watchers_count": 0, "size": 0, "default_branch": repo.default_branch,
        "open_issues_count": 0, "is_template": False, "topics": [],
        "has_issues": True, "has_projects": True, "has_wiki": True, "has_pages": False,
        "has_downloads": True, "has_discussions": False, "archived": False,
        "disabled": False, "visibility": "private" if repo.private else "public",
        "pushed_at": iso(repo.pushed_at or repo.created_at),
        "created_at": iso(repo.created_at), "updated_at": iso(repo.updated_at),
        "allow_forking": True, "web_commit_signoff_required": False,
        "subscribers_count": 0, "network_count": 0, "license": None,
        "forks": 0, "open_issues": 0, "watchers": 0,
    }
    if not webhook:
        body["permissions"] = dict(ROLE_PERMISSIONS[role])
    return body


def push_repository(base: str, repo: RepositoryRecord) -> JSON:
    """The repository object of a push payload: GitHub sends Unix timestamps there
    and adds ``stargazers``/``master_branch`` for historical reasons."""
    body = repository(base, repo, webhook=True)
    body["created_at"] = int(repo.created_at.timestamp())
    body["pushed_at"] = int((repo.pushed_at or repo.created_at).timestamp())
    body["stargazers"] = 0
    body["master_branch"] = repo.default_branch
    return body


def repository_summary(repo: RepositoryRecord) -> JSON:
    """The short form in installation events' ``repositories`` lists."""
    return {"id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name,
            "full_name": repo.full_name, "private": repo.private}


def app(base: str, github_app: GitHubApp) -> JSON:
    """``integration``: what ``GET /app`` answers."""
    return {
        "id": github_app.id, "slug": github_app.slug, "client_id": github_app.client_id,
        "node_id": node_id("A", github_app.id), "owner": user(base, github_app.owner),
        "name": github_app.name, "description": github_app.description,
        "external_url": github_app.external_url or f"{base}/apps/{github_app.slug}",
        "html_url": f"{base}/apps/{github_app.slug}",
        "created_at": iso(github_app.created_at), "updated_at": iso(github_app.created_at),
        "permissions": dict(github_app.permissions), "events": list(github_app.events),
        "installations_count": 0,
    }


def installation(base: str, inst: Installation, github_app: GitHubApp) -> JSON:
    """``installation``: REST answers and the ``installation`` field of its events."""
    return {
        "id": inst.id, "client_id": github_app.client_id,
        "account": user(base, inst.account),
        "repository_selection": inst.repository_selection,
        "access_tokens_url": f"{base}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{base}/installation/repositories",
        "html_url": f"{base}/settings/installations/{inst.id}",
        "app_id": inst.app_id, "app_slug": github_app.slug,
        "target_id": inst.account.id, "target_type": inst.account.type,
        "permissions": dict(inst.permissions), "events": list(inst.events),
        "created_at": iso(inst.created_at), "updated_at": iso(inst.updated_at),
        "single_file_name": None, "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": user(base, inst.suspended_by) if inst.suspended_by else None,
        "suspended_at": iso(inst.suspended_at),
    }

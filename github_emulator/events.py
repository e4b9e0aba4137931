"""Webhook payloads (push, installation, installation_repositories, repository, ping)
in the shapes GitHub sends; ``githubkit.webhooks.parse`` accepts every one of them."""

from __future__ import annotations

from typing import Any

from . import defaults, shapes
from .gitstore import CommitInfo, GitStore
from .shapes import JSON
from .state import Account, GitHubApp, Installation, RepositoryRecord


def _person(name: str, email: str, *, date: str | None = None) -> JSON:
    person: JSON = {"name": name, "email": email}
    if date is not None:
        person["date"] = date
    username = email.split("@", 1)[0] if email.endswith("@users.noreply.github.com") \
        else None
    if username:
        person["username"] = username
    return person


def push_commit(html: str, git: GitStore, commit: CommitInfo) -> JSON:
    """One entry of a push's ``commits`` (and ``head_commit``), with the paths it
    touched against its first parent, renames split into removed plus added."""
    parent = commit.parents[0] if commit.parents else None
    added: list[str] = []
    removed: list[str] = []
    modified: list[str] = []
    for change in git.diff(parent, commit.sha, renames=False):
        {"added": added, "removed": removed}.get(change.status, modified).append(change.path)
    return {
        "id": commit.sha, "tree_id": commit.tree, "distinct": True,
        "message": commit.message, "timestamp": commit.committer.date.isoformat(),
        "url": f"{html}/commit/{commit.sha}",
        "author": _person(commit.author.name, commit.author.email,
                          date=commit.author.date.isoformat()),
        "committer": _person(commit.committer.name, commit.committer.email,
                             date=commit.committer.date.isoformat()),
        "added": added, "removed": removed, "modified": modified,
    }


def _new_commits(git: GitStore, ref: str, before: str, after: str) -> list[str]:
    """Commits the push introduced: for a new branch, those on no other branch."""
    if before == defaults.ZERO_SHA:
        branch = ref.removeprefix("refs/heads/")
        return git.rev_list(after, "--not", f"--exclude={branch}", "--branches",
                            limit=defaults.PUSH_COMMITS_MAX)
    return git.rev_list(after, f"^{before}", limit=defaults.PUSH_COMMITS_MAX)


def push(base: str, *, repo: RepositoryRecord, git: GitStore, ref: str, before: str,
         after: str, pusher: Account, installation: Installation | None) -> JSON:
    """``push``: created, deleted and forced flags computed from git itself."""
    html = f"{base}/{repo.full_name}"
    created = before == defaults.ZERO_SHA
    deleted = after == defaults.ZERO_SHA
    forced = not created and not deleted and not git.is_ancestor(before, after)
    commits: list[JSON] = []
    head_commit = None
    if not deleted:
        commits = [push_commit(html, git, git.read_commit(sha))
                   for sha in _new_commits(git, ref, before, after)]
        head_commit = (commits[-1] if commits and commits[-1]["id"] == after
                       else push_commit(html, git, git.read_commit(after)))
    if created:
        compare = f"{html}/compare/{ref.rsplit('/', 1)[-1]}"
    else:
        compare = f"{html}/compare/{before[:12]}...{after[:12]}"
    body: JSON = {
        "ref": ref, "before": before, "after": after, "created": created,
        "deleted": deleted, "forced": forced, "base_ref": None, "compare": compare,
        "commits": commits, "head_commit": head_commit,
        "repository": shapes.push_repository(base, repo),
        "pusher": {"name": pusher.login, "email": pusher.email or
                   f"{pusher.login}@users.noreply.github.com"},
        "sender": shapes.user(base, pusher),
    }
    if installation is not None:
        body["installation"] = _installation_stub(installation)
    return body


def _installation_stub(installation: Installation) -> JSON:
    return {"id": installation.id, "node_id": shapes.node_id("I", installation.id)}


def installation_event(base: str, action: str, *, installation: Installation,
                       app: GitHubApp, repositories: list[RepositoryRecord],
                       sender: Account) -> JSON:
    """``installation``: created lists the repositories granted, like GitHub."""
    body: JSON = {
        "action": action, "installation": shapes.installation(base, installation, app),
        "requester": None, "sender": shapes.user(base, sender),
    }
    if action in ("created", "deleted", "new_permissions_accepted"):
        body["repositories"] = [shapes.repository_summary(r) for r in repositories]
    return body


def installation_repositories_event(base: str, action: str, *, installation: Installation,
                                    app: GitHubApp, added: list[RepositoryRecord],
                                    removed: list[RepositoryRecord],
                                    sender: Account) -> JSON:
    """``installation_repositories``: added or removed."""
    return {
        "action": action, "installation": shapes.installation(base, installation, app),
        "repository_selection": installation.repository_selection,
        "repositories_added": [shapes.repository_summary(r) for r in added],
        "repositories_removed": [shapes.repository_summary(r) for r in removed],
        "requester": None, "sender": shapes.user(base, sender),
    }


def repository_event(base: str, action: str, *, repo: RepositoryRecord,
                     installation: Installation | None, sender: Account,
                     changes: dict[str, Any] | None = None) -> JSON:
    """``repository``: renamed, transferred (with ``changes``) or deleted."""
    body: JSON = {"action": action, "repository": shapes.repository(base, repo, webhook=True),
                  "sender": shapes.user(base, sender)}
    if changes is not None:
        body["changes"] = changes
    if installation is not None:
        body["installation"] = _installation_stub(installation)
    return body


def ping_event(base: str, app: GitHubApp, content_type: str) -> JSON:
    """``ping``: sent when an App's webhook is (re)configured."""
    return {
        "zen": "Keep it logically awesome.", "hook_id": app.hook_id,
        "hook": {
            "type": "App", "id": app.hook_id, "name": "web", "active": True,
            "events": list(app.events),
            "config": {"content_type": content_type, "insecure_ssl": "0",
                       "url": app.webhook_url or ""},
            "updated_at": shapes.iso(app.created_at),
            "created_at": shapes.iso(app.created_at), "app_id": app.id,
            "deliveries_url": f"{base}/app/hook/deliveries",
        },
        "sender": shapes.user(base, app.owner),
    }

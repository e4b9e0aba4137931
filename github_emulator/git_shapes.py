"""JSON shapes of git data (refs, commits, trees, blobs, comparisons) as GitHub's REST
API returns them, built from :mod:`github_emulator.gitstore` records."""

from __future__ import annotations

import base64
import json

from .gitstore import CommitInfo, FileChange, Signature, TreeEntry
from .shapes import JSON, iso, node_id


def _signature(sign: Signature) -> JSON:
    return {"name": sign.name, "email": sign.email, "date": iso(sign.date)}


_UNSIGNED = {"verified": False, "reason": "unsigned", "signature": None,
             "payload": None, "verified_at": None}


def _node(sha: str) -> int:
    return int(sha[:12], 16)


def git_commit(api: str, html: str, commit: CommitInfo) -> JSON:
    """``git-commit``: ``GET /repos/{o}/{r}/git/commits/{sha}``. ``api``/``html`` are
    the repository's API and web URLs."""
    return {
        "sha": commit.sha, "node_id": node_id("C", _node(commit.sha)),
        "url": f"{api}/git/commits/{commit.sha}",
        "html_url": f"{html}/commit/{commit.sha}",
        "author": _signature(commit.author), "committer": _signature(commit.committer),
        "tree": {"sha": commit.tree, "url": f"{api}/git/trees/{commit.tree}"},
        "message": commit.message,
        "parents": [{"sha": p, "url": f"{api}/git/commits/{p}",
                     "html_url": f"{html}/commit/{p}"} for p in commit.parents],
        "verification": dict(_UNSIGNED),
    }


def commit(api: str, html: str, commit: CommitInfo,
           files: list[FileChange] | None = None) -> JSON:
    """``commit``: ``GET /commits/{ref}``, branch heads and compare entries. Files and
    stats appear only where GitHub sends them (a single commit)."""
    body: JSON = {
        "sha": commit.sha, "node_id": node_id("C", _node(commit.sha)),
        "commit": {
            "author": _signature(commit.author), "committer": _signature(commit.committer),
            "message": commit.message,
            "tree": {"sha": commit.tree, "url": f"{api}/git/trees/{commit.tree}"},
            "url": f"{api}/git/commits/{commit.sha}", "comment_count": 0,
            "verification": dict(_UNSIGNED),
        },
        "url": f"{api}/commits/{commit.sha}", "html_url": f"{html}/commit/{commit.sha}",
        "comments_url": f"{api}/commits/{commit.sha}/comments",
        "author": None, "committer": None,
        "parents": [{"sha": p, "url": f"{api}/commits/{p}",
                     "html_url": f"{html}/commit/{p}"} for p in commit.parents],
    }
    if files is not None:
        additions = sum(f.additions for f in files)
        deletions = sum(f.deletions for f in files)
        body["stats"] = {"total": additions + deletions, "additions": additions,
                         "deletions": deletions}
        body["files"] = [diff_entry(api, html, commit.sha, f) for f in files]
    return body


def diff_entry(api: str, html: str, ref: str, change: FileChange) -> JSON:
    """``diff-entry``: one file of a commit or comparison (no patch text)."""
    entry: JSON = {
        "sha": change.sha, "filename": change.path, "status": change.status,
        "additions": change.additions, "deletions": change.deletions,
        "changes": change.additions + change.deletions,
        "blob_url": f"{html}/blob/{ref}/{change.path}",
        "raw_url": f"{html}/raw/{ref}/{change.path}",
        "contents_url": f"{api}/contents/{change.path}?ref={ref}",
    }
    if change.previous_path is not None:
        entry["previous_filename"] = change.previous_path
    return entry


def short_branch(api: str, name: str, sha: str) -> JSON:
    """``short-branch``: an item of ``GET /branches``."""
    return {"name": name, "commit": {"sha": sha, "url": f"{api}/commits/{sha}"},
            "protected": False}


def branch(api: str, html: str, name: str, head: CommitInfo) -> JSON:
    """``branch-with-protection``: ``GET /branches/{branch}``."""
    return {
        "name": name, "commit": commit(api, html, head),
        "_links": {"self": f"{api}/branches/{name}", "html": f"{html}/tree/{name}"},
        "protected": False,
        "protection": {"enabled": False, "required_status_checks": {
            "enforcement_level": "off", "contexts": [], "checks": []}},
        "protection_url": f"{api}/branches/{name}/protection",
    }


def ref(api: str, name: str, sha: str) -> JSON:
    """``git-ref``: ``GET /git/ref/{ref}`` and items of ``GET /git/refs``."""
    return {"ref": name, "node_id": node_id("REF", _node(sha)),
            "url": f"{api}/git/{name}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"}}


def tree(api: str, sha: str, entries: list[TreeEntry], *, max_entries: int,
         max_bytes: int) -> JSON:
    """``git-tree``, truncated like GitHub past ``max_entries`` or ``max_bytes`` of
    JSON: ``truncated`` turns true and the list stops where the budget ran out."""
    items: list[JSON] = []
    budget = max_bytes
    truncated = False
    for entry in entries:
        item: JSON = {"path": entry.path, "mode": entry.mode, "type": entry.type,
                      "sha": entry.sha}
        if entry.type == "blob":
            item["size"] = entry.size
            item["url"] = f"{api}/git/blobs/{entry.sha}"
        elif entry.type == "tree":
            item["url"] = f"{api}/git/trees/{entry.sha}"
        cost = len(json.dumps(item)) + 2
        if len(items) >= max_entries or cost > budget:
            truncated = True
            break
        budget -= cost
        items.append(item)
    return {"sha": sha, "url": f"{api}/git/trees/{sha}", "tree": items,
            "truncated": truncated}


def blob(api: str, sha: str, content: bytes) -> JSON:
    """``blob``: base64 with line breaks, as GitHub encodes it."""
    return {"sha": sha, "node_id": node_id("B", _node(sha)), "size": len(content),
            "url": f"{api}/git/blobs/{sha}",
            "content": base64.encodebytes(content).decode("ascii"), "encoding": "base64"}


def comparison(api: str, html: str, *, base: CommitInfo, head: CommitInfo,
               merge_base: CommitInfo, ahead_by: int, behind_by: int,
               commits: list[CommitInfo], files: list[FileChange], basehead: str) -> JSON:
    """``commit-comparison``: ``GET /compare/{base}...{head}``."""
    if ahead_by and behind_by:
        status = "diverged"
    elif ahead_by:
        status = "ahead"
    elif behind_by:
        status = "behind"
    else:
        status = "identical"
    return {
        "url": f"{api}/compare/{basehead}", "html_url": f"{html}/compare/{basehead}",
        "permalink_url": f"{html}/compare/{base.sha[:7]}...{head.sha[:7]}",
        "diff_url": f"{html}/compare/{basehead}.diff",
        "patch_url": f"{html}/compare/{basehead}.patch",
        "base_commit": commit(api, html, base),
        "merge_base_commit": commit(api, html, merge_base),
        "status": status, "ahead_by": ahead_by, "behind_by": behind_by,
        "total_commits": ahead_by,
        "commits": [commit(api, html, c) for c in commits],
        "files": [diff_entry(api, html, head.sha, f) for f in files],
    }

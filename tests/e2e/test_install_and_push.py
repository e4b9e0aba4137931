"""End to end: install the App, push, and the database follows the branch.

Everything is real: migrations applied by the release command, gunicorn receiving
signed deliveries from the emulator, an RQ worker process running the jobs, git
repositories as the source of truth.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from github_emulator.history import push
from models import (
    DeliveryStatus,
    Project,
    ProjectSync,
    SyncStatus,
    SyncTrigger,
    WebhookDelivery,
    db,
)
from tests.sync.conftest import Tracked, assert_matches_git, assert_single_chain

from .conftest import Stack, install_and_first_sync, query, wait_for


def current_head(project_id: int) -> str | None:
    project = db.session.get(Project, project_id)
    if project is None or project.current_sync is None:
        return None
    return project.current_sync.head_commit_sha


def test_install_then_pushes_keep_the_database_at_the_branch_head(
    stack: Stack, tmp_path: Path
) -> None:
    github = stack.github
    record, history, pid = install_and_first_sync(
        stack, tmp_path / "work", "e2e", files=120, directories=12, seed=11
    )
    first_head = history.head
    wait_for(
        lambda: query(stack, lambda: current_head(pid) == first_head),
        f"the first sync to reach {first_head}",
    )
    tracked = Tracked(
        github,
        history,
        github.git(record).path,
        github.clone_url(record),
        pid,
        query(stack, lambda: db.session.get_one(Project, pid).repository_id),
    )
    with stack.app.app_context():
        first = db.session.scalars(select(ProjectSync).where(ProjectSync.project_id == pid)).one()
        assert first.trigger is SyncTrigger.INSTALL and first.status is SyncStatus.SUCCEEDED
        assert_matches_git(tracked, first_head)

    for _ in range(4):
        history.commit_random_change()
        push(history.work_dir, github.clone_url(record))
    last_head = history.head
    wait_for(
        lambda: query(stack, lambda: current_head(pid) == last_head),
        f"the pushes to be synced to {last_head}",
    )
    with stack.app.app_context():
        assert_matches_git(tracked, last_head)
        chain = assert_single_chain(pid)
        assert 2 <= len(chain) <= 5
        assert {s.trigger for s in chain[:-1]} == {SyncTrigger.PUSH}
        # Every delivery GitHub sent was acknowledged, stored once and processed.
        sent = [d for d in github.deliveries if d.event in ("installation", "push")]
        assert sent and all(d.status_code == 202 for d in sent)
        stored = db.session.scalar(select(func.count()).select_from(WebhookDelivery))
        assert stored == len({d.guid for d in github.deliveries})
        unfinished = db.session.scalars(
            select(WebhookDelivery.delivery_id).where(
                WebhookDelivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.FAILED])
            )
        ).all()
        assert unfinished == []


def test_a_forged_delivery_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{stack.url}/webhooks/github",
        data=b'{"zen": "forged"}',
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "7e1a9c1e-0000-4000-8000-000000000001",
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 401
    stored = query(
        stack, lambda: db.session.scalar(select(func.count()).select_from(WebhookDelivery))
    )
    assert stored == 0

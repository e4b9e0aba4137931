"""Delivery processing: routing, the installation life cycle, pushes, idempotency.

Deliveries go through the real endpoint and real Redis; their jobs run in this process
with RQ's SimpleWorker. Syncs are requested but not run here (see test_coalescing).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from githubkit.webhooks import parse
from sqlalchemy import func, select

from models import (
    DeliveryStatus,
    Installation,
    Project,
    ProjectSync,
    Repository,
    StopKind,
    SyncStatus,
    SyncTrigger,
    WebhookDelivery,
    db,
)
from sync_jobs import installations, routing
from sync_jobs.deliveries import process_delivery
from tests.webhooks.conftest import deliver, payload, run_delivery_jobs

pytestmark = pytest.mark.usefixtures("default_branches")


def process(
    app: Flask,
    client: FlaskClient,
    name: str,
    body: dict[str, Any] | None = None,
    *,
    form: bool = False,
) -> WebhookDelivery:
    """Deliver a recorded payload, run its job, and return the delivery row."""
    delivery_id = str(uuid.uuid4())
    response = deliver(
        client, name.split(".")[0], body or payload(name), form=form, delivery_id=delivery_id
    )
    assert response.status_code == 202, response.json
    run_delivery_jobs(app)
    with app.app_context():
        row = db.session.scalar(select(WebhookDelivery).filter_by(delivery_id=delivery_id))
        assert row is not None
        db.session.expunge(row)
        return row


def snapshot(app: Flask) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the processing writes, as plain tuples (for before/after comparisons)."""
    with app.app_context():
        return {
            "installations": [
                (i.github_id, i.account_login, i.suspended_at is None, i.deleted_at is None)
                for i in db.session.scalars(select(Installation).order_by(Installation.id))
            ],
            "repositories": [
                (r.github_id, r.full_name, r.default_branch, r.private, r.removed_at is None)
                for r in db.session.scalars(select(Repository).order_by(Repository.id))
            ],
            "projects": [
                (p.id, p.repository_id, p.branch, p.stopped_reason, p.stop_kind)
                for p in db.session.scalars(select(Project).order_by(Project.id))
            ],
            "syncs": [
                (s.id, s.project_id, s.trigger, s.status)
                for s in db.session.scalars(select(ProjectSync).order_by(ProjectSync.id))
            ],
        }


def project_of(app: Flask, full_name: str) -> Project:
    with app.app_context():
        project = db.session.scalar(
            select(Project).join(Repository).where(Repository.full_name == full_name)
        )
        assert project is not None
        db.session.expunge(project)
        return project


def test_routing_table_names_a_handler_for_every_handled_delivery() -> None:
    assert routing.fetch("installation", "created") is installations.installation_created
    assert routing.fetch("installation", "suspend") is installations.installation_suspended
    assert (
        routing.fetch("installation_repositories", "removed") is installations.repositories_removed
    )
    assert routing.fetch("repository", "renamed") is installations.repository_updated
    assert routing.fetch("repository", "deleted") is installations.repository_deleted
    assert routing.fetch("push", None) is installations.push
    assert routing.fetch("push", "some_future_action") is installations.push
    assert routing.fetch("delete", None) is installations.ref_deleted
    assert routing.fetch("installation", "brand_new_action") is None
    assert routing.fetch("star", "created") is None
    assert not routing.handles("star") and not routing.handles("ping")


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_installation_created_tracks_default_branches_and_queues_first_syncs(
    app: Flask, client: FlaskClient, form: bool
) -> None:
    row = process(app, client, "installation.created", form=form)
    assert row.status == DeliveryStatus.PROCESSED
    assert row.status_reason == "2 repositories tracked, 2 first syncs requested"
    state = snapshot(app)
    assert state["installations"] == [(31337, "octo-org", True, True)]
    assert [r[:4] for r in state["repositories"]] == [
        (700001, "octo-org/widgets", "main", False),
        (700002, "octo-org/gadgets", "trunk", True),
    ]
    assert [(p[2], p[3]) for p in state["projects"]] == [("main", None), ("trunk", None)]
    assert [(s[2], s[3]) for s in state["syncs"]] == [(SyncTrigger.INSTALL, SyncStatus.QUEUED)] * 2


def test_processing_a_delivery_twice_leaves_the_same_rows(app: Flask, client: FlaskClient) -> None:
    names = [
        "installation.created",
        "push",
        "installation_repositories.added",
        "repository.renamed",
        "delete.branch",
        "installation_repositories.removed",
    ]
    for name in names:
        row = process(app, client, name)
        before = snapshot(app)
        with app.app_context():
            # a retried job: nothing happens at all
            assert "already processed" in process_delivery(row.delivery_id)
            # a forced rerun of the handlers themselves: still the same rows
            stored = db.session.scalar(select(WebhookDelivery).filter_by(id=row.id))
            assert stored is not None
            stored.status = DeliveryStatus.PENDING
            db.session.commit()
            process_delivery(row.delivery_id)
        assert snapshot(app) == before, name


def test_push_to_tracked_branch_requests_one_coalesced_sync(
    app: Flask, client: FlaskClient
) -> None:
    process(app, client, "installation.created")
    first = process(app, client, "push")
    second = process(app, client, "push")
    project = project_of(app, "octo-org/widgets")
    with app.app_context():
        syncs = db.session.scalars(select(ProjectSync).filter_by(project_id=project.id)).all()
    # the install sync is still queued, so both pushes coalesce into it
    assert len(syncs) == 1
    assert (
        first.status_reason
        == second.status_reason
        == f"sync {syncs[0].id} of project {project.id} requested"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("push.tag", "refs/tags/v1.0 is not a branch"),
        ("push.untracked_branch", "branch feature is not tracked"),
        ("delete.tag", "tag deleted; only branches are tracked"),
    ],
)
def test_tags_and_untracked_branches_are_ignored_with_reason(
    app: Flask, client: FlaskClient, name: str, reason: str
) -> None:
    process(app, client, "installation.created")
    before = snapshot(app)
    row = process(app, client, name)
    assert (row.status, row.status_reason) == (DeliveryStatus.IGNORED, reason)
    assert snapshot(app) == before


def test_push_for_unknown_repository_is_ignored(app: Flask, client: FlaskClient) -> None:
    row = process(app, client, "push")
    assert row.status == DeliveryStatus.IGNORED
    assert row.status_reason == "repository is not tracked by any installation"


def test_unknown_field_and_unknown_action_are_processed_from_plain_json(
    app: Flask, client: FlaskClient
) -> None:
    body = payload("installation_repositories.added")
    body["repository_selection"] = "some_selection_github_added_later"
    body["shiny_new_field"] = {"rolled_out": True}
    with pytest.raises(ValueError):
        parse("installation_repositories", __import__("json").dumps(body))
    process(app, client, "installation.created")
    row = process(app, client, "installation_repositories.added", body)
    assert row.status == DeliveryStatus.PROCESSED
    assert project_of(app, "octo-org/sprockets").branch == "develop"

    push = payload("push")
    push["action"] = "force_pushed_via_merge_queue"  # an action push never had
    push["merge_queue"] = {"id": 1}
    row = process(app, client, "push", push)
    assert row.status == DeliveryStatus.PROCESSED
    assert "requested" in (row.status_reason or "")

    odd = payload("installation.new_permissions_accepted")
    odd["action"] = "permissions_rebalanced"
    row = process(app, client, "installation", odd)
    assert (row.status, row.status_reason) == (
        DeliveryStatus.IGNORED,
        "action 'permissions_rebalanced' of event installation is not handled",
    )


def test_installation_life_cycle(app: Flask, client: FlaskClient) -> None:
    process(app, client, "installation.created")
    widgets = project_of(app, "octo-org/widgets")

    # repository added: tracked on its default branch, first sync queued
    process(app, client, "installation_repositories.added")
    sprockets = project_of(app, "octo-org/sprockets")
    assert sprockets.branch == "develop"

    # renamed, then transferred: same rows, new names, history attached
    process(app, client, "repository.renamed")
    assert project_of(app, "octo-org/widgets-renamed").id == widgets.id
    process(app, client, "repository.transferred")
    assert project_of(app, "new-owner/widgets").id == widgets.id

    # suspended: pushes are ignored; unsuspended: one catch-up sync per project
    process(app, client, "installation.suspend")
    row = process(app, client, "push")
    assert (row.status, row.status_reason) == (
        DeliveryStatus.IGNORED,
        "the installation is suspended or uninstalled",
    )
    row = process(app, client, "installation.unsuspend")
    assert row.status_reason == "installation resumed, 3 catch-up syncs requested"

    process(app, client, "installation.new_permissions_accepted")

    # a repository removed from the installation stops tracking, data kept
    process(app, client, "installation_repositories.removed")
    gadgets = project_of(app, "octo-org/gadgets")
    assert gadgets.stopped_reason == "the repository was removed from the installation"
    assert gadgets.stop_kind == StopKind.REPOSITORY_REMOVED

    # the tracked branch deleted: the project stops with a visible reason
    row = process(app, client, "delete.branch")
    widgets = project_of(app, "new-owner/widgets")
    assert widgets.stopped_reason == "the branch main was deleted on GitHub"
    assert widgets.stop_kind == StopKind.BRANCH_DELETED
    row = process(app, client, "push")
    assert row.status == DeliveryStatus.IGNORED
    assert "stopped: the branch main was deleted" in (row.status_reason or "")

    # uninstalled: everything stops, rows are kept (PURGE_ON_UNINSTALL off)
    process(app, client, "installation.deleted")
    state = snapshot(app)
    assert state["installations"][0][3] is False
    assert all(p[3] is not None and p[4] is not None for p in state["projects"])
    assert {p[4] for p in state["projects"]} == {
        StopKind.BRANCH_DELETED,  # each keeps its first cause
        StopKind.REPOSITORY_REMOVED,
        StopKind.APP_UNINSTALLED,
    }
    assert len(state["projects"]) == 3

    # reinstalled: tracking resumes with a sync per resumed project
    row = process(app, client, "installation.created")
    assert row.status_reason == "2 repositories tracked, 2 first syncs requested"


def test_repository_deleted_stops_its_project(app: Flask, client: FlaskClient) -> None:
    process(app, client, "installation.created")
    process(app, client, "repository.deleted")
    widgets = project_of(app, "octo-org/widgets")
    assert widgets.stopped_reason == "the repository octo-org/widgets was deleted on GitHub"
    assert widgets.stop_kind == StopKind.REPOSITORY_DELETED


def test_push_deleting_the_branch_stops_and_recreating_resumes(
    app: Flask, client: FlaskClient
) -> None:
    process(app, client, "installation.created")
    process(app, client, "push.deleted")
    stopped = project_of(app, "octo-org/widgets")
    assert stopped.stopped_reason is not None
    assert stopped.stop_kind == StopKind.BRANCH_DELETED
    recreated = payload("push")
    recreated["created"] = True
    row = process(app, client, "push", recreated)
    assert row.status == DeliveryStatus.PROCESSED
    resumed = project_of(app, "octo-org/widgets")
    assert (resumed.stopped_reason, resumed.stop_kind) == (None, None)


def test_push_creating_the_branch_resumes_only_a_branch_deletion(
    app: Flask, client: FlaskClient
) -> None:
    """The stop's kind decides, not its words: a project stopped for another cause
    whose reason reads like a branch deletion stays stopped."""
    process(app, client, "installation.created")
    with app.app_context():
        project = db.session.get(Project, project_of(app, "octo-org/widgets").id)
        assert project is not None
        assert project.stop(StopKind.OTHER, installations.branch_deleted_reason(project.branch))
        db.session.commit()
    recreated = payload("push")
    recreated["created"] = True
    row = process(app, client, "push", recreated)
    assert row.status == DeliveryStatus.IGNORED
    assert project_of(app, "octo-org/widgets").stop_kind == StopKind.OTHER


@pytest.fixture
def purge_settings(app_settings: dict[str, Any]) -> dict[str, Any]:
    return {**app_settings, "PURGE_ON_UNINSTALL": True}


@pytest.fixture
def app_settings_purging(purge_settings: dict[str, Any]) -> dict[str, Any]:
    return purge_settings


def test_uninstall_with_purge_deletes_the_stored_data(app: Flask, client: FlaskClient) -> None:
    process(app, client, "installation.created")
    app.config["PURGE_ON_UNINSTALL"] = True
    widgets = project_of(app, "octo-org/widgets")
    with app.app_context():
        # a small lineage, as the engine leaves it, must not block the purge
        first = db.session.get(ProjectSync, 1)
        assert first is not None and first.project_id == widgets.id
        first.status, first.sequence = SyncStatus.SUCCEEDED, 1
        db.session.add(
            ProjectSync(
                project_id=widgets.id,
                trigger=SyncTrigger.PUSH,
                status=SyncStatus.SUCCEEDED,
                sequence=2,
                previous_sync_id=1,
            )
        )
        db.session.commit()
    row = process(app, client, "installation.deleted")
    assert row.status_reason == ("purged 2 repositories (the App was uninstalled from octo-org)")
    with app.app_context():
        for model in (Repository, Project, ProjectSync):
            assert db.session.scalar(select(func.count()).select_from(model)) == 0
        installation = db.session.scalar(select(Installation))
        assert installation is not None and installation.deleted_at is not None

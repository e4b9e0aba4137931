"""A transferred repository moves to the new owner's installation, or is hidden until an
installation there claims it; nobody keeps reading it through the old one."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from github_emulator import EmulatorServer
from github_emulator.receiver import WebhookReceiver
from models import Installation, Project, Repository, StopKind, db
from sync_jobs import installations
from webhook_app.auth import forget_listing

from .conftest import add_project, sign_in


def transferred_payload(receiver: WebhookReceiver) -> dict[str, Any]:
    deliveries = [json.loads(r.body) for r in receiver.events("repository")]
    transfers = [d for d in deliveries if d["action"] == "transferred"]
    assert len(transfers) == 1
    return transfers[0]


def visible(client: FlaskClient) -> set[str]:
    return {p["repository"] for p in client.get("/api/v1/projects").json["items"]}


def test_a_transfer_moves_the_repository_to_the_new_owners_installation(
    app: Flask,
    github_emulator: EmulatorServer,
    webhook_receiver: WebhookReceiver,
) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    record = github_emulator.create_repository("acme", "widgets", owner_type="Organization")
    acme = github_emulator.install("acme", None, account_type="Organization", members=("alice",))
    globex = github_emulator.install(
        "globex", None, account_type="Organization", members=("carol",)
    )
    with app.app_context():
        add_project(record, acme)
        db.session.add(Installation(github_id=globex, account_login="globex"))
        db.session.commit()
    alice, carol = app.test_client(), app.test_client()
    sign_in(alice, login="alice")
    sign_in(carol, login="carol")
    assert visible(alice) == {"acme/widgets"} and visible(carol) == set()

    github_emulator.transfer_repository(record, "globex")
    payload = transferred_payload(webhook_receiver)
    assert payload["installation"]["id"] == globex  # GitHub tells the new owner only
    with app.app_context():
        outcome = installations.repository_updated(payload, delivery_id="d-1")
        assert "globex/widgets" in outcome.reason
        row = db.session.scalars(select(Repository)).one()
        assert row.installation is not None and row.installation.github_id == globex
    for person in (alice, carol):
        with person.session_transaction() as stored:
            token = stored["github_token"]
        with app.app_context():
            forget_listing(token)  # as if the cached listing had expired
    assert visible(alice) == set() and visible(carol) == {"globex/widgets"}


def test_a_transfer_no_installation_claims_hides_the_repository(
    app: Flask, github_emulator: EmulatorServer, webhook_receiver: WebhookReceiver
) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    record = github_emulator.create_repository("acme", "widgets", owner_type="Organization")
    acme = github_emulator.install("acme", None, account_type="Organization", members=("alice",))
    with app.app_context():
        add_project(record, acme)
    alice = app.test_client()
    sign_in(alice, login="alice")
    assert visible(alice) == {"acme/widgets"}

    github_emulator.transfer_repository(record, "initech")  # no App there: no delivery
    assert webhook_receiver.events("repository") == []
    # Even before anything says so, GitHub no longer lists it under acme: hidden.
    with alice.session_transaction() as stored:
        token = stored["github_token"]
    with app.app_context():
        forget_listing(token)  # as if the cached listing had expired
    assert visible(alice) == set()
    # A transfer payload without an installation detaches it and stops its syncs.
    payload = {
        "action": "transferred",
        "repository": {"id": record.id, "full_name": "initech/widgets", "private": False},
    }
    with app.app_context():
        installations.repository_updated(payload, delivery_id="d-2")
        row = db.session.scalars(select(Repository)).one()
        assert row.installation is None
        project = db.session.scalars(select(Project)).one()
        assert project.stopped_reason and "initech/widgets" in project.stopped_reason
        assert project.stop_kind == StopKind.REPOSITORY_TRANSFERRED

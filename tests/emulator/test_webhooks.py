"""Webhooks: signed deliveries from git pushes and state changes, every payload
parsed by githubkit, the delivery log and redelivery."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs

import httpx
from githubkit import GitHub
from githubkit.webhooks import parse, verify

from github_emulator import EmulatorServer, WebhookContentType
from github_emulator.history import generate_repository, push
from github_emulator.receiver import ReceivedRequest, WebhookReceiver
from github_emulator.testing import SampleRepository


def payload_of(request: ReceivedRequest) -> bytes:
    if request.headers["Content-Type"] == "application/x-www-form-urlencoded":
        return parse_qs(request.body.decode())["payload"][0].encode()
    return request.body


def check_delivery(server: EmulatorServer, request: ReceivedRequest) -> dict:
    """Signature, headers and githubkit parsing of one received delivery."""
    headers = request.headers
    assert verify(server.webhook_secret, request.body, headers["X-Hub-Signature-256"])
    assert verify(server.webhook_secret, request.body, headers["X-Hub-Signature"])
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")
    assert headers["X-GitHub-Hook-Installation-Target-Type"] == "integration"
    assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(server.app_id)
    assert len(headers["X-GitHub-Delivery"]) == 36
    parse(headers["X-GitHub-Event"], payload_of(request))
    return json.loads(payload_of(request))


def test_git_push_delivers_signed_push_webhooks(github_emulator: EmulatorServer,
                                                webhook_receiver: WebhookReceiver,
                                                sample_repository: SampleRepository) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    history = sample_repository.history
    before = history.head
    change = history.commit_random_change()
    sample_repository.push()
    (request,) = webhook_receiver.events("push")
    body = check_delivery(github_emulator, request)
    assert (body["before"], body["after"], body["ref"]) == (before, change.sha,
                                                            "refs/heads/main")
    assert not body["created"] and not body["deleted"] and not body["forced"]
    assert [c["id"] for c in body["commits"]] == [change.sha]
    assert body["head_commit"]["tree_id"] == subprocess.run(
        ["git", "rev-parse", "main^{tree}"], cwd=sample_repository.work_dir,
        capture_output=True, text=True, check=True).stdout.strip()
    assert body["installation"]["id"] == sample_repository.installation_id
    assert github_emulator.deliveries[-1].status_code == 202


def test_forced_created_and_deleted_pushes(github_emulator: EmulatorServer,
                                           webhook_receiver: WebhookReceiver,
                                           sample_repository: SampleRepository) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    work = sample_repository.work_dir
    rewrite = sample_repository.history.force_push_rewrite(drop=2)
    sample_repository.push(force=True)
    subprocess.run(["git", "branch", "feature"], cwd=work, check=True)
    push(work, sample_repository.clone_url, branch="feature", pusher="someone")
    push(work, sample_repository.clone_url, branch="feature", delete=True)
    forced, created, deleted = (check_delivery(github_emulator, r)
                                for r in webhook_receiver.events("push"))
    assert forced["forced"] and forced["after"] == rewrite.sha
    assert [c["id"] for c in forced["commits"]] == [rewrite.sha]
    assert created["created"] and created["ref"] == "refs/heads/feature"
    assert created["commits"] == [] and created["sender"]["login"] == "someone"
    assert deleted["deleted"] and deleted["head_commit"] is None
    assert deleted["after"] == "0" * 40


def test_every_event_and_action_parses(github_emulator: EmulatorServer,
                                       webhook_receiver: WebhookReceiver,
                                       sample_repository: SampleRepository) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    installation_id = sample_repository.installation_id
    extra = github_emulator.create_repository("octo", "extra")
    github_emulator.ping()
    github_emulator.add_repositories(installation_id, [extra])
    github_emulator.remove_repositories(installation_id, [extra])
    github_emulator.add_repositories(installation_id, [extra])
    github_emulator.suspend(installation_id)
    github_emulator.unsuspend(installation_id)
    github_emulator.accept_new_permissions(installation_id, {"contents": "write"})
    github_emulator.rename_repository(extra, "renamed")
    # GitHub sends "transferred" only to the new owner's installation.
    github_emulator.install("octo-org", None, account_type="Organization")
    github_emulator.transfer_repository(extra, "octo-org")
    github_emulator.delete_repository(extra)
    github_emulator.uninstall(installation_id)
    seen = set()
    for request in webhook_receiver.received:
        body = check_delivery(github_emulator, request)
        seen.add((request.headers["X-GitHub-Event"], body.get("action")))
    assert seen >= {
        ("ping", None), ("installation_repositories", "added"),
        ("installation_repositories", "removed"), ("installation", "suspend"),
        ("installation", "unsuspend"), ("installation", "new_permissions_accepted"),
        ("repository", "renamed"), ("repository", "transferred"),
        ("installation", "created"), ("repository", "deleted"), ("installation", "deleted"),
    }


def test_form_encoded_deliveries(github_emulator: EmulatorServer,
                                 webhook_receiver: WebhookReceiver,
                                 sample_repository: SampleRepository) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    github_emulator.knobs.webhook_content_type = WebhookContentType.FORM
    sample_repository.history.commit_random_change()
    sample_repository.push()
    (request,) = webhook_receiver.events("push")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert check_delivery(github_emulator, request)["after"] == sample_repository.history.head


def test_delivery_log_and_redelivery(github_emulator: EmulatorServer, app_github: GitHub,
                                     webhook_receiver: WebhookReceiver,
                                     sample_repository: SampleRepository) -> None:
    webhook_receiver.status = 500
    github_emulator.webhook_url = webhook_receiver.url
    failed = github_emulator.ping()
    assert failed.status_code == 500 and failed.status == "Invalid HTTP Response: 500"
    listed = app_github.rest.apps.list_webhook_deliveries().parsed_data
    assert listed[0].id == failed.id and listed[0].status_code == 500
    assert {d.event for d in listed} >= {"ping", "installation"}
    detail = app_github.rest.apps.get_webhook_delivery(failed.id).parsed_data
    assert detail.event == "ping" and detail.request.payload is not None
    assert detail.response.payload is not None
    webhook_receiver.status = 200
    app_github.rest.apps.redeliver_webhook_delivery(failed.id)
    retry = github_emulator.deliveries[-1]
    assert retry.redelivery and retry.guid == failed.guid and retry.status_code == 200
    first, second = webhook_receiver.events("ping")
    assert first.body == second.body
    assert first.headers["X-GitHub-Delivery"] == second.headers["X-GitHub-Delivery"]


def test_dropped_repository_webhooks_are_neither_sent_nor_logged(
        github_emulator: EmulatorServer, webhook_receiver: WebhookReceiver,
        sample_repository: SampleRepository, tmp_path: Path) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    other = github_emulator.create_repository("octo", "other")
    github_emulator.add_repositories(sample_repository.installation_id, [other])
    control = f"{github_emulator.url}/_emulator/knobs"
    assert httpx.patch(control, json={"drop_webhooks_for": "octo/sample"}).status_code == 422
    knobs = httpx.patch(control, json={"drop_webhooks_for": ["Octo/Sample"]}).json()
    assert knobs["drop_webhooks_for"] == ["octo/sample"]
    logged = len(github_emulator.deliveries)
    change = sample_repository.history.commit_random_change()
    sample_repository.push()
    github_emulator.rename_repository(sample_repository.record, "sample-renamed")
    assert github_emulator.git(sample_repository.record).resolve("refs/heads/main") == \
        change.sha
    assert len(github_emulator.deliveries) == logged
    assert webhook_receiver.events("push") == webhook_receiver.events("repository") == []
    work = tmp_path / "other-work"
    generate_repository(work, seed=7, files=3, directories=1, commits=1)
    push(work, github_emulator.clone_url(other))
    (delivered,) = webhook_receiver.events("push")
    assert check_delivery(github_emulator, delivered)["repository"]["full_name"] == \
        "octo/other"
    assert len(github_emulator.deliveries) == logged + 1
    httpx.post(f"{control}/reset")
    assert github_emulator.knobs.drop_webhooks_for == set()


def test_push_returns_at_once_when_the_receiver_is_down(
        github_emulator: EmulatorServer, sample_repository: SampleRepository) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        github_emulator.webhook_url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    change = sample_repository.history.commit_random_change()
    started = time.perf_counter()
    sample_repository.push()
    assert time.perf_counter() - started < 2.0
    assert github_emulator.git(sample_repository.record).resolve("refs/heads/main") == \
        change.sha
    failed = github_emulator.deliveries[-1]
    assert (failed.event, failed.status_code, failed.status) == (
        "push", 0, "failed to connect to host")
    assert failed.duration < 1.0

"""The App's delivery log as GitHub serves it: cursor pages newest first, failure
statuses for receivers that are down or slow, redelivery and its three-day limit."""

from __future__ import annotations

import socket
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from githubkit import GitHub
from githubkit.exception import RequestFailed

from github_emulator import EmulatorServer, defaults
from github_emulator.knobs import Knobs
from github_emulator.receiver import WebhookReceiver


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhooks/github"


def next_cursor(response: httpx.Response) -> str | None:
    following = response.links.get("next", {}).get("url")
    return parse_qs(urlsplit(following).query)["cursor"][0] if following else None


def test_list_pages_newest_first_through_the_link_cursor(github_emulator: EmulatorServer,
                                                         app_github: GitHub) -> None:
    github_emulator.webhook_url = None  # logged without sending: fast
    other = github_emulator.state.create_app(
        name="Other App", owner="someone", private_key_pem=github_emulator.private_key_pem)
    for _ in range(4):
        github_emulator.ping()
        github_emulator.ping(other)
    mine = sorted((r.id for r in github_emulator.deliveries
                   if r.app_id == github_emulator.app_id), reverse=True)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        response = app_github.rest.apps.list_webhook_deliveries(
            per_page=2, **({"cursor": cursor} if cursor else {}))
        page = [d.id for d in response.parsed_data]
        seen += page
        cursor = next_cursor(response.raw_response)
        if cursor is None:
            break
        assert len(page) == 2  # another App's deliveries take no room on a page
    assert seen == mine


def test_per_page_is_capped_at_one_hundred(github_emulator: EmulatorServer,
                                           app_github: GitHub) -> None:
    github_emulator.webhook_url = None
    for _ in range(defaults.PER_PAGE_MAX + 5 - len(github_emulator.deliveries)):
        github_emulator.ping()
    response = app_github.rest.apps.list_webhook_deliveries(per_page=500)
    assert len(response.parsed_data) == defaults.PER_PAGE_MAX
    assert next_cursor(response.raw_response) is not None


def test_a_bad_cursor_is_refused(github_emulator: EmulatorServer, app_github: GitHub) -> None:
    with pytest.raises(RequestFailed) as refused:
        app_github.rest.apps.list_webhook_deliveries(cursor="not-a-cursor")
    assert refused.value.response.status_code == 400


def test_unreachable_receiver_is_logged_failed_at_once(github_emulator: EmulatorServer,
                                                       app_github: GitHub,
                                                       webhook_receiver: WebhookReceiver
                                                       ) -> None:
    github_emulator.webhook_url = webhook_receiver.url
    delivered = github_emulator.ping()
    github_emulator.webhook_url = closed_port_url()
    started = time.perf_counter()
    failed = github_emulator.ping()
    assert time.perf_counter() - started < 1.0
    assert (failed.status, failed.status_code) == ("failed to connect to host", 0)
    listed = app_github.rest.apps.list_webhook_deliveries().parsed_data
    assert (listed[0].id, listed[0].status_code) == (failed.id, 0)
    assert listed[0].status == "failed to connect to host"
    failures = app_github.rest.apps.list_webhook_deliveries(status="failure").parsed_data
    successes = app_github.rest.apps.list_webhook_deliveries(status="success").parsed_data
    assert failed.id in {d.id for d in failures} and delivered.id not in {
        d.id for d in failures}
    assert {d.status for d in successes} == {"OK"} and delivered.id in {
        d.id for d in successes}


def test_slow_receiver_is_logged_timed_out(github_emulator: EmulatorServer,
                                           app_github: GitHub,
                                           webhook_receiver: WebhookReceiver) -> None:
    assert Knobs().webhook_timeout == defaults.WEBHOOK_TIMEOUT_SECONDS == 10
    github_emulator.webhook_url = webhook_receiver.url
    webhook_receiver.delay = 2.0
    github_emulator.knobs.webhook_timeout = 0.3
    timed_out = github_emulator.ping()
    assert (timed_out.status, timed_out.status_code) == ("timed out", 0)
    assert 0.3 <= timed_out.duration < 2.0
    detail = app_github.rest.apps.get_webhook_delivery(timed_out.id).parsed_data
    assert (detail.status, detail.status_code) == ("timed out", 0)


def test_redelivery_is_accepted_then_listed_as_a_redelivery(github_emulator: EmulatorServer,
                                                            app_github: GitHub,
                                                            webhook_receiver: WebhookReceiver
                                                            ) -> None:
    github_emulator.webhook_url = closed_port_url()
    failed = github_emulator.ping()
    github_emulator.webhook_url = webhook_receiver.url
    accepted = app_github.rest.apps.redeliver_webhook_delivery(delivery_id=failed.id)
    assert accepted.status_code == 202 and accepted.json() == {}
    (latest, original, *_) = app_github.rest.apps.list_webhook_deliveries().parsed_data
    assert latest.redelivery and latest.guid == failed.guid and latest.status == "OK"
    assert original.id == failed.id and not original.redelivery
    assert webhook_receiver.events("ping")[0].headers["X-GitHub-Delivery"] == failed.guid


def test_redelivery_of_an_unknown_or_old_delivery_is_refused(github_emulator: EmulatorServer,
                                                             app_github: GitHub) -> None:
    github_emulator.webhook_url = None
    with pytest.raises(RequestFailed) as unknown:
        app_github.rest.apps.redeliver_webhook_delivery(delivery_id=123)
    assert unknown.value.response.status_code == 404
    old = github_emulator.ping()
    fresh = github_emulator.ping()
    github_emulator.age_delivery(old.id, seconds=defaults.DELIVERY_RETENTION_SECONDS + 1)
    with pytest.raises(RequestFailed) as too_old:
        app_github.rest.apps.redeliver_webhook_delivery(delivery_id=old.id)
    assert too_old.value.response.status_code == 422
    listed = {d.id for d in app_github.rest.apps.list_webhook_deliveries().parsed_data}
    assert fresh.id in listed and old.id not in listed  # GitHub lists three days back
    aged = httpx.post(f"{github_emulator.url}/_emulator/deliveries/{fresh.id}/age",
                      json={"seconds": defaults.DELIVERY_RETENTION_SECONDS + 1})
    assert aged.status_code == 200 and aged.json()["id"] == fresh.id
    with pytest.raises(RequestFailed) as also_old:
        app_github.rest.apps.redeliver_webhook_delivery(delivery_id=fresh.id)
    assert also_old.value.response.status_code == 422

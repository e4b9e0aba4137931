"""Two people in one organisation, with different access on GitHub, signed in through
the emulator: on every page, API route and event stream each sees only the repositories
GitHub lists for them, and each action is allowed or refused exactly by permission.

The table below names every endpoint of the app. A route added without an entry in
``ROUTE_RULES`` (refused at runtime) or without a case here fails
:func:`test_every_route_has_a_rule_and_a_case`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from github_emulator import EmulatorServer
from webhook_app.access import ROUTE_RULES, RouteRule
from webhook_app.auth import forget_listing

from .conftest import Org, csrf_of, sign_in


@dataclass(frozen=True)
class Case:
    """How to call one endpoint for one project. ``{project}``, ``{sync}`` (a past sync
    of the project), ``{current}`` and ``{branch}`` (fresh each call) are filled in."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    listing: bool = False  # shows every visible project rather than one
    ok: tuple[int, ...] = (200,)
    headers: dict[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "api.list_projects": Case("GET", "/api/v1/projects", listing=True),
    "api.list_branches": Case("GET", "/api/v1/projects/{project}/branches"),
    "api.project_status": Case("GET", "/api/v1/projects/{project}/status"),
    "api.history": Case("GET", "/api/v1/projects/{project}/history?all=1"),
    "api.memory": Case("GET", "/api/v1/projects/{project}/memory?sync={sync}"),
    "api.files": Case("GET", "/api/v1/projects/{project}/files"),
    "api.track_branch": Case(
        "POST", "/api/v1/projects/{project}/branches", json={"branch": "{branch}"}, ok=(201,)
    ),
    "api.start_sync": Case("POST", "/api/v1/projects/{project}/syncs", json={}, ok=(202,)),
    "api.restore": Case(
        "POST", "/api/v1/projects/{project}/restore", json={"sync_id": "{sync}"}, ok=(202,)
    ),
    "sse.project_sync_events": Case("GET", "/api/v1/events/project-sync/{current}"),
    "pages.index": Case("GET", "/", listing=True),
    "pages.project": Case("GET", "/projects/{project}"),
    "pages.resync": Case("POST", "/projects/{project}/resync", form={}, ok=(303,)),
    "pages.restore": Case(
        "POST", "/projects/{project}/restore", form={"sync_id": "{sync}", "confirmed": "1"},
        ok=(303,),
    ),
    "pages.project_events": Case("GET", "/projects/{project}/events"),
    "pages.auto_sync": Case(
        "POST", "/projects/{project}/auto-sync", form={"enabled": "on"}, ok=(303,)
    ),
    # Without confirmed=1 the form answers the confirmation page and changes nothing.
    "pages.untrack": Case("POST", "/projects/{project}/untrack", form={}, ok=(200,)),
    "pages.track_branch": Case(
        "POST", "/projects/{project}/branches", form={"branch": "{branch}"}, ok=(303,)
    ),
    # No App is configured here: the App cannot ask GitHub (tests/api/ lists branches).
    "api.github_branches": Case(
        "GET", "/api/v1/projects/{project}/github-branches", ok=(503,)
    ),
    "api.update_project": Case("PATCH", "/api/v1/projects/{project}", json={"auto_sync": True}),
    # Last: it untracks the project (again a no-op for every later call).
    "api.untrack_project": Case("DELETE", "/api/v1/projects/{project}"),
}
"""Every READ and ACT endpoint. PUBLIC ones need no person and are tested where they
live (health, metrics, webhooks, sign-in, setup, the OpenAPI document)."""

PUBLIC_ELSEWHERE = {
    "static": "tests/install/test_headers.py",
    "health.healthz": "tests/test_smoke.py",
    "health.readyz": "tests/test_smoke.py",
    "metrics.serve": "tests/test_metrics.py",
    "webhooks.receive": "tests/webhooks/",
    "auth.login": "tests/install/test_sign_in.py",
    "auth.callback": "tests/install/test_sign_in.py",
    "auth.logout": "tests/install/test_sign_in.py",
    "setup.start": "tests/install/test_setup.py",
    "setup.unlock": "tests/install/test_setup.py",
    "setup.complete": "tests/install/test_setup.py",
    "api.openapi_document": "tests/api/test_openapi.py",
    "pages.favicon": "tests/api/test_live_pages.py",
}

GUARDED_ELSEWHERE = {
    # A stream of every visible project never ends by itself, so the loop below cannot
    # read it; its filtering by person is tested with two people there.
    "pages.events": "tests/api/test_live_streams.py",
}

# What GitHub gives each person on acme's repositories (see the ``org`` fixture).
ACCESS = {
    "alice": {"widgets": "push", "gadgets": "pull"},
    "bob": {"widgets": "pull"},
    "nobody": {},
}
REPOSITORIES = ("widgets", "gadgets", "vault")

_branches = itertools.count(1)


def test_every_route_has_a_rule_and_a_case(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == set(ROUTE_RULES), "every route needs a rule in access.ROUTE_RULES"
    guarded = {e for e, rule in ROUTE_RULES.items() if rule is not RouteRule.PUBLIC}
    assert guarded == set(CASES) | set(GUARDED_ELSEWHERE), "every READ/ACT route needs a case"
    public = {e for e, rule in ROUTE_RULES.items() if rule is RouteRule.PUBLIC}
    assert public == set(PUBLIC_ELSEWHERE)


def test_a_route_without_a_rule_is_refused(app: Flask) -> None:
    app.add_url_rule("/_unruled", "unruled", lambda: "secret")
    answer = app.test_client().get("/_unruled")
    assert answer.status_code == 404 and "secret" not in answer.text


def _fill(text: str, org: Org, repository: str) -> str:
    older, current = org.syncs[repository]
    return (
        text.replace("{project}", str(org.projects[repository]))
        .replace("{sync}", str(older))
        .replace("{current}", str(current))
        .replace("{branch}", f"topic-{next(_branches)}")
    )


def call(client: FlaskClient, case: Case, org: Org, repository: str, **extra: Any) -> TestResponse:
    path = _fill(case.path, org, repository)
    headers = {**case.headers, **extra.pop("headers", {})}
    if case.json is not None:
        body = {k: _fill(v, org, repository) if isinstance(v, str) else v
                for k, v in case.json.items()}
        if "sync_id" in body:
            body["sync_id"] = int(body["sync_id"])
        return client.open(path, method=case.method, json=body, headers=headers)
    if case.form is not None:
        form = {k: _fill(v, org, repository) for k, v in case.form.items()}
        form["csrf_token"] = extra.pop("csrf")
        return client.open(path, method=case.method, data=form, headers=headers)
    return client.open(path, method=case.method, headers=headers)


def expected(person: str, endpoint: str, repository: str) -> tuple[int, ...]:
    case = CASES[endpoint]
    held = ACCESS[person].get(repository)
    if held is None:
        return (404,)
    if ROUTE_RULES[endpoint] is RouteRule.ACT and held != "push":
        return (403,)
    return case.ok


def listed(answer: TestResponse) -> set[str]:
    if answer.is_json:
        return {item["repository"].split("/")[1] for item in answer.json["items"]}
    return set(re.findall(r"acme/(\w+)</a>", answer.text))


@pytest.fixture
def people(app: Flask, github_emulator: EmulatorServer, org: Org) -> dict[str, FlaskClient]:
    """A client per person, each signed in through the emulator."""
    clients: dict[str, FlaskClient] = {}
    for person in ACCESS:
        clients[person] = app.test_client()
        sign_in(clients[person], login=person)
    return clients


def test_each_person_sees_and_does_exactly_what_github_allows(
    app: Flask, org: Org, people: dict[str, FlaskClient]
) -> None:
    bearer = {}
    for person, client in people.items():
        with client.session_transaction() as stored:
            bearer[person] = stored["github_token"]
    csrf = {person: csrf_of(client, "/setup") for person, client in people.items()}
    missing_project = 10_000
    for endpoint, case in CASES.items():
        for person, client in people.items():
            if case.listing:
                answer = call(client, case, org, "widgets")
                assert answer.status_code == 200, (endpoint, person)
                assert listed(answer) == set(ACCESS[person]), (endpoint, person)
                continue
            for repository in REPOSITORIES:
                answer = call(client, case, org, repository, csrf=csrf[person])
                want = expected(person, endpoint, repository)
                assert answer.status_code in want, (endpoint, person, repository,
                                                    answer.status_code, answer.text[:200])
                if want == (404,):
                    # Hidden reads like missing: same status, same words but the id.
                    ghost = call(
                        client,
                        Case(case.method, case.path.replace("{project}", str(missing_project))
                             .replace("{current}", str(missing_project)),
                             json=case.json, form=case.form),
                        org, repository, csrf=csrf[person],
                    )
                    assert ghost.status_code == 404
                    assert re.sub(r"\d+", "N", ghost.text) == re.sub(r"\d+", "N", answer.text)
                if endpoint.startswith(("api.", "sse.")) and case.form is None:
                    script = call(
                        app.test_client(), case, org, repository,
                        headers={"Authorization": f"Bearer {bearer[person]}"},
                    )
                    assert script.status_code in want, ("bearer", endpoint, person, repository)


def test_anonymous_gets_nothing(app: Flask, org: Org) -> None:
    client = app.test_client()
    csrf = csrf_of(client, "/setup")
    for endpoint, case in CASES.items():
        answer = call(client, case, org, "widgets", csrf=csrf)
        if endpoint.startswith(("api.", "sse.")):
            assert answer.status_code == 401, endpoint
        elif case.method == "GET":
            assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
        else:
            assert answer.status_code == 401, endpoint
        assert "acme/" not in answer.text, endpoint


def test_only_usable_buttons_are_shown(org: Org, people: dict[str, FlaskClient]) -> None:
    alice, bob = people["alice"], people["bob"]
    widgets = f"/projects/{org.projects['widgets']}"
    gadgets = f"/projects/{org.projects['gadgets']}"
    mine = alice.get(widgets).text
    assert "Resync now" in mine and "Restore memory to sync" in mine and 'id="branch"' in mine
    for page in (bob.get(widgets).text, alice.get(gadgets).text):
        assert "Resync now" not in page and "Restore memory" not in page
        assert 'id="branch"' not in page and 'id="read-only"' in page
    index = alice.get("/").text
    assert index.count('aria-label="Resync') == 1  # widgets only
    assert '<option value="/projects/' in index and index.count("<option") == 1
    assert 'id="track-form"' not in bob.get("/").text


def test_a_stricter_action_permission_is_honoured(
    app: Flask, org: Org, people: dict[str, FlaskClient]
) -> None:
    app.config["ACTION_PERMISSION"] = "maintain"
    answer = people["alice"].post(f"/api/v1/projects/{org.projects['widgets']}/syncs", json={})
    assert answer.status_code == 403 and "maintain" in answer.json["error"]
    app.config["ACTION_PERMISSION"] = "pull"
    answer = people["bob"].post(f"/api/v1/projects/{org.projects['widgets']}/syncs", json={})
    assert answer.status_code == 202


def test_access_follows_github_within_the_cache_time(
    app: Flask, github_emulator: EmulatorServer, org: Org, people: dict[str, FlaskClient]
) -> None:
    bob = people["bob"]
    vault = f"/api/v1/projects/{org.projects['vault']}/status"
    assert bob.get(vault).status_code == 404
    github_emulator.grant("acme/vault", "bob", "read")
    assert bob.get(vault).status_code == 404  # GitHub's answer is cached for a while
    with bob.session_transaction() as stored:
        token = stored["github_token"]
    with app.app_context():
        forget_listing(token)  # as if VISIBLE_REPOSITORIES_TTL_SECONDS had passed
    assert bob.get(vault).status_code == 200

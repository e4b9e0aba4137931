"""The OpenAPI document describes exactly the routes of the API and event blueprints,
with their security and error answers, and real answers validate against it."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from redis import Redis
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.test import TestResponse

from models import db
from models.queries import lineage
from sync_jobs.redis_client import EXTENSION_NAME
from tests.api.conftest import Tracked
from webhook_app.access import ROUTE_RULES, RouteRule
from webhook_app.openapi import OPERATIONS

PREFIX = "/api/v1"


def routes(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in ("api", "sse"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule).removeprefix(PREFIX)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                found.add((path, method.lower()))
    return found


def test_document_matches_the_routes(client: FlaskClient, app: Flask) -> None:
    answer = client.get("/api/v1/openapi.json")
    assert answer.status_code == 200
    doc = answer.json
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"][0]["url"].endswith(PREFIX)
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert documented == routes(app)


def test_every_reference_resolves_and_operations_are_complete(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    text = str(doc)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in doc["components"]["schemas"], name
    ids = []
    for path, item in doc["paths"].items():
        path_params = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert set(re.findall(r"{(\w+)}", path)) == path_params, path
        for method, op in item.items():
            if method == "parameters":
                continue
            ids.append(op["operationId"])
            assert op["responses"] and all(r.get("description") for r in op["responses"].values())
    assert len(ids) == len(set(ids))


def test_validates_with_openapi_spec_validator(client: FlaskClient) -> None:
    validate(client.get("/api/v1/openapi.json").json)


# --- Security and errors, as the API answers them -----------------------------------------


def test_security_schemes_and_who_may_call_each_route(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    schemes = doc["components"]["securitySchemes"]
    assert schemes["githubToken"] == {**schemes["githubToken"], "type": "http", "scheme": "bearer"}
    assert schemes["session"]["type"] == "apiKey" and schemes["session"]["in"] == "cookie"
    for op in OPERATIONS:
        spec = doc["paths"][op.path][op.method]
        rule = ROUTE_RULES[op.endpoint]
        if rule is RouteRule.PUBLIC:
            assert spec["security"] == [], op.endpoint
            continue
        assert {"githubToken": []} in spec["security"] and {"session": []} in spec["security"]
        assert ({} in spec["security"]) is (rule is RouteRule.READ), op.endpoint
        assert {"401", "403", "503"} <= set(spec["responses"]), op.endpoint


def test_error_answers_are_the_one_error_model(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").json
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"] and error.get("additionalProperties") is False
    for op in OPERATIONS:
        responses = doc["paths"][op.path][op.method]["responses"]
        for status, answer in responses.items():
            if int(status) >= 400:
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (op.endpoint, status)
        if op.body is not None:
            assert {"400", "415", "422"} <= set(responses), op.endpoint
            request_schema = doc["paths"][op.path][op.method]["requestBody"]["content"]
            ref = request_schema["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert doc["components"]["schemas"][ref]["additionalProperties"] is False


# --- Answers of real calls against the document ----------------------------------------------


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:openapi", resource)
    pointer = schema.get("$ref")
    root = {"$ref": "urn:openapi" + pointer} if pointer else schema
    return Draft202012Validator(root, registry=registry, format_checker=FormatChecker())


def conforms(doc: dict[str, Any], path: str, method: str, answer: TestResponse) -> None:
    """The answer's status is documented for the operation, and its body is valid."""
    responses = doc["paths"][path][method]["responses"]
    status = str(answer.status_code)
    assert status in responses, (path, method, status, answer.get_json(silent=True))
    content = responses[status]["content"]
    if "application/json" not in content:
        return
    assert answer.is_json, (path, status)
    schema = content["application/json"]["schema"]
    errors = list(_validator(doc, schema).iter_errors(answer.json))
    assert not errors, (path, method, status, [e.message for e in errors])


def test_real_answers_validate_against_the_document(
    client: FlaskClient, synced: Tracked, app: Flask
) -> None:
    doc = client.get("/api/v1/openapi.json").json
    project_id = synced.project_id
    first = min(db.session.scalars(lineage(project_id)), key=lambda s: s.id)
    base = f"/api/v1/projects/{project_id}"
    p = "/projects/{project_id}"
    calls: list[tuple[str, str, TestResponse]] = [
        ("/projects", "get", client.get("/api/v1/projects")),
        (p + "/status", "get", client.get(f"{base}/status")),
        (p + "/branches", "get", client.get(f"{base}/branches")),
        (p + "/github-branches", "get", client.get(f"{base}/github-branches")),
        (p + "/history", "get", client.get(f"{base}/history?all=1&per_page=1")),
        (p + "/history", "get", client.get(f"{base}/history?page=0")),
        (p + "/memory", "get", client.get(f"{base}/memory?content=1&per_page=3")),
        (p + "/memory", "get", client.get(f"{base}/memory?sync={first.id}")),
        (p + "/files", "get", client.get(f"{base}/files?path_prefix=d")),
        (p + "/files", "get", client.get(f"{base}/files?sync=999999")),
        (p + "/syncs", "post", client.post(f"{base}/syncs", json={"full": True})),
        (p + "/syncs", "post", client.post(f"{base}/syncs", json={"full": "yes"})),
        (p + "/syncs", "post", client.post(f"{base}/syncs", data="full=1")),
        (p + "/restore", "post", client.post(f"{base}/restore", json={"sync_id": first.id})),
        (p + "/restore", "post", client.post(f"{base}/restore", json=None)),
        (p + "/branches", "post", client.post(f"{base}/branches", json={"branch": "b2"})),
        (p + "/branches", "post", client.post(f"{base}/branches", json={"branch": "main"})),
        (p, "patch", client.patch(base, json={"auto_sync": False})),
        (p, "patch", client.patch(base, json={"auto_sync": True})),
        (p + "/status", "get", client.get("/api/v1/projects/999999/status")),
        ("/openapi.json", "get", client.get("/api/v1/openapi.json")),
    ]
    answered = {call[2].status_code for call in calls}
    assert {200, 201, 202, 400, 404, 409, 415, 422} <= answered, answered
    for path, method, answer in calls:
        conforms(doc, path, method, answer)
    untracked = client.delete(base)
    conforms(doc, p, "delete", untracked)
    conforms(doc, p + "/syncs", "post", client.post(f"{base}/syncs", json={}))  # 409 now
    # A refused request from another machine, and Redis gone, answer as documented too.
    elsewhere = client.get("/api/v1/projects", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert elsewhere.status_code == 403
    conforms(doc, "/projects", "get", elsewhere)
    other = client.post(f"{base}/branches", json={"branch": "b3"})
    app.extensions[EXTENSION_NAME] = Redis(port=1, socket_connect_timeout=0.2)
    down = client.post(f"/api/v1/projects/{other.json['project']['id']}/syncs", json={})
    assert down.status_code == 503
    conforms(doc, p + "/syncs", "post", down)

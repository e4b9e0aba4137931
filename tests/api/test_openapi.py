"""The OpenAPI document describes exactly the routes of the API and event blueprints."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

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

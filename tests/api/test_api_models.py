"""Every request body the API takes is checked by its model: unknown keys, wrong types
and missing fields are 422 naming the field; a body that is no JSON object is 400.

The cases come from the route table (``openapi.OPERATIONS``) and each model's own
fields, so a new body model is covered without a new test. Each request goes through
the real route against a project row; nothing may be queued by a refused request.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from pydantic import BaseModel

from tests.api.conftest import make_project, queued_job_ids
from webhook_app.openapi import OPERATIONS, Operation

WITH_BODY = [op for op in OPERATIONS if op.body is not None]

WRONG_VALUES: dict[type, list[Any]] = {
    bool: ["yes", "true", 1, 0, None, [True], {}],
    int: ["1", True, 1.5, None, [1], {}],
    str: [7, True, None, ["main"], {}],
}
"""JSON values that a lax parser would take for each type, and a strict one refuses."""

JSON = {"Content-Type": "application/json"}


def _url(op: Operation, project_id: int) -> str:
    return "/api/v1" + op.path.replace("{project_id}", str(project_id))


def _send(client: FlaskClient, op: Operation, project_id: int, **kwargs: Any) -> Any:
    return client.open(_url(op, project_id), method=op.method.upper(), **kwargs)


def _fields(model: type[BaseModel]) -> list[tuple[str, type]]:
    return [(name, field.annotation) for name, field in model.model_fields.items()]  # type: ignore[misc]


def _valid(model: type[BaseModel]) -> dict[str, Any]:
    """A body of the right types (not necessarily one the action accepts)."""
    sample = {bool: False, int: 1, str: "feature"}
    return {name: sample[kind] for name, kind in _fields(model)}


def _wrong_type_cases() -> list[Any]:
    cases = []
    for op in WITH_BODY:
        assert op.body is not None
        for name, kind in _fields(op.body):
            for value in WRONG_VALUES[kind]:
                cases.append(
                    pytest.param(op, name, value, id=f"{op.operation_id}-{name}-{value!r}")
                )
    return cases


def test_every_body_field_has_wrong_values_to_try() -> None:
    assert {op.operation_id for op in WITH_BODY} == {
        "updateProject",
        "trackBranch",
        "startSync",
        "restore",
    }
    for op in WITH_BODY:
        assert op.body is not None
        for _, kind in _fields(op.body):
            assert kind in WRONG_VALUES, (op.operation_id, kind)


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.operation_id)
def test_an_unknown_key_is_422_naming_it(
    client: FlaskClient, app_context: object, op: Operation
) -> None:
    assert op.body is not None
    project = make_project()
    answer = _send(client, op, project.id, json={**_valid(op.body), "fulll": True})
    assert answer.status_code == 422, answer.json
    assert "Unknown field 'fulll'" in answer.json["error"]
    for name, _ in _fields(op.body):
        assert name in answer.json["error"]  # the fields there are
    assert queued_job_ids() == []


@pytest.mark.parametrize(("op", "name", "value"), _wrong_type_cases())
def test_a_wrong_type_is_422_naming_the_field(
    client: FlaskClient, app_context: object, op: Operation, name: str, value: Any
) -> None:
    assert op.body is not None
    project = make_project()
    body = {**_valid(op.body), name: value}
    answer = _send(client, op, project.id, json=body)
    assert answer.status_code == 422, (body, answer.json)
    assert answer.json["error"].startswith(f"{name} must be "), answer.json
    assert queued_job_ids() == []


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.operation_id)
def test_a_missing_required_field_is_422_naming_it(
    client: FlaskClient, app_context: object, op: Operation
) -> None:
    assert op.body is not None
    required = [n for n, f in op.body.model_fields.items() if f.is_required()]
    project = make_project()
    for name in required:
        body = {k: v for k, v in _valid(op.body).items() if k != name}
        answer = _send(client, op, project.id, json=body)
        assert answer.status_code == 422 and f"{name} is required" in answer.json["error"]
    assert queued_job_ids() == []


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.operation_id)
@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("null", "got null"),
        ("[]", "got an array"),
        ('"x"', "got a string"),
        ("7", "got a number"),
        ("true", "got a boolean"),
        ("{", "not valid JSON"),
        ('{"full": tru}', "not valid JSON"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON", id="nested-too-deep"),
    ],
)
def test_a_body_that_is_no_json_object_is_400(
    client: FlaskClient, app_context: object, op: Operation, raw: str, named: str
) -> None:
    project = make_project()
    answer = _send(client, op, project.id, data=raw, headers=JSON)
    assert answer.status_code == 400, answer.json
    assert named in answer.json["error"]
    assert queued_job_ids() == []


@pytest.mark.parametrize("op", WITH_BODY, ids=lambda op: op.operation_id)
def test_a_body_not_sent_as_json_is_415(
    client: FlaskClient, app_context: object, op: Operation
) -> None:
    project = make_project()
    answer = _send(client, op, project.id, data="full=1")
    assert answer.status_code == 415
    assert answer.json == {"error": "Send Content-Type: application/json."}


def test_every_problem_is_named_at_once(client: FlaskClient, app_context: object) -> None:
    project = make_project()
    answer = client.patch(f"/api/v1/projects/{project.id}", json={"auto_sync": 1, "x": 2})
    assert answer.status_code == 422
    assert "auto_sync must be true or false, got 1." in answer.json["error"]
    assert "Unknown field 'x'" in answer.json["error"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("page=0", "page must be"),
        (f"page={10**30}", "page must be"),
        ("per_page=x", "per_page must be an integer"),
        ("per_page=100000", "per_page must be"),
        ("sync=abc", "sync must be an integer"),
        ("content=maybe", "content must be true or false"),
    ],
)
def test_a_malformed_query_parameter_is_400_naming_it(
    client: FlaskClient, app_context: object, query: str, named: str
) -> None:
    project = make_project()
    answer = client.get(f"/api/v1/projects/{project.id}/memory?{query}")
    assert answer.status_code == 400, answer.json
    assert answer.json["error"].startswith(named), answer.json

"""The JSON API against its own OpenAPI document, with schemathesis: requests generated
from the document (valid and not), every answer checked against it, and never a 5xx.

Rows exist for a few ids so that generated requests reach real projects and syncs,
not only 404s. The event stream is left out: it stays open while a sync is unfinished
(tests/api/test_sse.py covers it). The number of examples per operation is bounded.

Each operation gets its own Hypothesis run inside one test (schemathesis's pytest
fixture loader does not work with this pytest), and every operation is run before the
failures are reported together. The checks are named: no 5xx, every answer's status,
content type and body as the document says. The run prints how many requests it made
and the statuses they got.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from models import SyncStatus
from tests.api.conftest import add_sync, make_project

EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _rows(app: Flask) -> list[int]:
    """Three projects, each with a successful and a failed sync; their ids."""
    ids = []
    with app.app_context():
        for number in range(3):
            project = make_project(full_name=f"octo/api-{number}")
            for status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED):
                add_sync(project, status, sequence=1 if status is SyncStatus.SUCCEEDED else None)
            ids.append(project.id)
    return ids


def test_api_answers_conform_to_its_document(app: Flask) -> None:
    ids = _rows(app)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app).exclude(
        path_regex="^/events/"
    )
    # Random ids almost never name a row: most cases get a real project (one an id
    # that names none), so bodies and queries are checked, not only the 404.
    project_ids = st.sampled_from([*ids, *ids, 10**6])
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = []
    found = [result.ok() for result in schema.get_all_operations()]
    # Untracking last: the projects stay tracked for the resyncs and restores.
    for operation in sorted(found, key=lambda operation: operation.method == "delete"):
        operations.append(f"{operation.method.upper()} {operation.path}")
        for mode in GenerationMode:

            @EXAMPLES
            @given(case=operation.as_strategy(mode), project_id=project_ids)
            def check(case: Any, project_id: int) -> None:
                if "project_id" in (case.path_parameters or {}):
                    case.path_parameters["project_id"] = project_id
                # From this machine, as the test client's requests are (sign-in is off).
                response = case.call(environ_base={"REMOTE_ADDR": "127.0.0.1"})
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:  # nothing to get wrong: no parameters and no body
                assert mode is GenerationMode.NEGATIVE and operation.path == "/projects"
            except (Exception, BaseExceptionGroup) as exc:  # run every operation, show all
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {exc}")
    print(f"schemathesis: {len(operations)} operations, {statuses.total()} requests, {statuses}")
    assert not failures, "\n\n".join(failures)
    assert len(operations) >= 12, operations
    assert statuses.total() >= len(operations) * 50
    assert {200, 201, 202, 400, 404, 409, 415, 422} <= set(statuses), statuses

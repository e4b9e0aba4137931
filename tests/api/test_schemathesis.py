"""The JSON API against its own OpenAPI document, with schemathesis: requests generated
from the document (valid and not), every answer checked against it, and never a 5xx.

Rows exist for a few ids so that generated requests reach real projects and syncs,
not only 404s. The event stream is left out: it stays open while a sync is unfinished
(tests/api/test_sse.py covers it). The number of examples per operation is bounded.

Each operation gets its own Hypothesis run inside one test (schemathesis's pytest
fixture loader does not work with this pytest), and every operation is run before the
failures are reported together.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from models import SyncStatus
from tests.api.conftest import add_sync, make_project

EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _rows(app: Flask) -> None:
    with app.app_context():
        for number in range(3):
            project = make_project(full_name=f"octo/api-{number}")
            for status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED):
                add_sync(project, status)


def test_api_answers_conform_to_its_document(app: Flask) -> None:
    _rows(app)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app).exclude(
        path_regex="^/events/"
    )
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @EXAMPLES
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            # From this machine, as the test client's requests are (sign-in is off).
            case.call_and_validate(
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
                # A branch name must be one git accepts, which JSON Schema cannot say
                # in full; the API answers 400 naming the rule, which is documented.
                excluded_checks=[positive_data_acceptance],
            )

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # run every operation, show all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations >= 9
    assert not failures, "\n\n".join(failures)

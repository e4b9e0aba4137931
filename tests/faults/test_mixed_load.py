"""Load with GitHub's own irregularities: 4 workers, 20 repositories, 300 pushes in
shuffled order, 10% of the deliveries sent twice under the same GUID, 10% force
pushes back to an older commit. Every project ends at its head in one chain."""

from __future__ import annotations

import pytest

from .conftest import assert_no_failed_syncs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_three_hundred_shuffled_pushes_with_duplicates_and_force_pushes(run_scenario) -> None:
    run = run_scenario("mixed-load")
    answers = run.outcome.notes["answers"]
    assert len(answers["first"]) >= 300
    assert set(answers["first"]) == {202}
    assert answers["duplicate"] and set(answers["duplicate"]) == {200}
    assert run.outcome.notes["forced"] > 0
    assert_no_failed_syncs(run.stack)
    run.stack.assert_alive()

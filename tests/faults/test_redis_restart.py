"""Redis killed and started again empty, twice: in the middle of a burst (50 pushes
over 5 repositories, Redis down from the 20th to the 35th), then while a sync runs and
a follow-up is queued, with no push after it. Queues, locks, pending markers,
scheduled retries and progress streams are gone; the database still knows every
delivery and every sync, so the maintenance passes rebuild what matters."""

from __future__ import annotations

import pytest

from models import SyncStatus

from .conftest import assert_no_failed_syncs

pytestmark = [pytest.mark.slow]


def test_redis_restarted_empty_mid_burst_and_under_a_running_sync(run_scenario) -> None:
    run = run_scenario("redis-all")
    stack = run.stack
    for sync_id in (run.outcome.notes["running"], run.outcome.notes["follow_up"]):
        status = stack.sync(sync_id).status
        assert status in (SyncStatus.SUCCEEDED, SyncStatus.SUPERSEDED), (sync_id, status)
    assert_no_failed_syncs(stack)
    stack.assert_alive()

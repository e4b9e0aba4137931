"""A private PostgreSQL stopped for 10 s: while a sync is in each phase (one after the
other), then during a burst of deliveries. Workers and the maintenance process wait
it out; what the receiver could not store (503) GitHub delivers again when the
failed-delivery reconciler asks; every project reaches its head."""

from __future__ import annotations

import pytest

from .conftest import GRACE_SECONDS, assert_no_failed_syncs
from .harness import wait_until
from .oracle import losses
from .scenarios import REDELIVER_SECONDS, TARGET_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_postgres_stopped_in_every_phase_and_during_a_burst(run_scenario) -> None:
    run = run_scenario("pg-all")
    stack = run.stack
    assert run.outcome.notes["refused"] > 0, "no delivery met the outage"
    # Refused deliveries are asked for again by the failed-delivery reconciler (every
    # REDELIVER_INTERVAL_SECONDS, 20 s here).
    wait_until(lambda: losses(stack).deliveries_lost == 0, "every refused delivery to be stored",
               REDELIVER_SECONDS + TARGET_SECONDS + GRACE_SECONDS)
    assert_no_failed_syncs(stack)
    stack.assert_alive()

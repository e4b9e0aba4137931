"""SIGKILL in every phase of a sync (resolve, diff, fetch, apply): first the work horse
alone, on four repositories at once, then (while those syncs still wait for their
retry) the whole worker with its horse and scheduler, on four more, each followed by a
new worker. Every killed sync lands on its head; nothing is half-applied."""

from __future__ import annotations

import pytest

from models import SyncStatus

from .conftest import assert_no_failed_syncs
from .harness import PHASES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_sigkill_of_the_horse_and_of_the_whole_worker_in_every_phase(run_scenario) -> None:
    run = run_scenario("kill-all")
    stack = run.stack
    killed = run.outcome.notes["killed"]
    assert sorted(killed) == sorted((mode, phase) for mode in ("horse", "worker")
                                    for phase in PHASES)
    for (mode, phase), sync_id in killed.items():
        status = stack.sync(sync_id).status
        assert status in (SyncStatus.SUCCEEDED, SyncStatus.SUPERSEDED), (mode, phase, status)
    assert_no_failed_syncs(stack)
    stack.assert_alive()

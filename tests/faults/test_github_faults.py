"""GitHub misbehaving, every way at once, each fault on repositories of an installation
of its own: forty 500s in a row, a call held past the client's timeout, connection
resets, the primary rate limit spent with the reset two minutes away, and (once the
hang and the resets are over) a secondary rate limit with ``Retry-After``. Syncs wait
and retry; none fails, and another installation's syncs never wait for a limit that
is not theirs. The benchmark (``bench/faults.py``) runs each of them alone."""

from __future__ import annotations

import pytest

from .conftest import assert_no_failed_syncs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]


def test_github_misbehaving_every_way_at_once(run_scenario) -> None:
    run = run_scenario("github-all")
    notes = run.outcome.notes
    assert notes["github-500"]["remaining"] == 0, "a sync stopped trying before GitHub recovered"
    assert notes["github-timeout"]["remaining"] == 0, "the hung call was never made"
    assert notes["github-reset"]["remaining"] == 0, "not every reset was met"
    limit = notes["rate-limit"]
    assert limit["failed"] == []
    # Git's smart HTTP costs no REST rate limit, so over git the limited project may
    # reach its head before the reset; a sync that needed REST must say what it waits for.
    assert limit["waiting_reasons"] or limit["limited_synced_before_reset"], (
        "the rate-limited sync's row never said what it waits for"
    )
    assert limit["free_synced_before_reset"], (
        "another installation's project waited for this installation's rate limit"
    )
    assert_no_failed_syncs(run.stack)
    run.stack.assert_alive()

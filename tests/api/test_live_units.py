"""Pure helpers of the live pages: the progress bar's percentage across phases, and
sizes, times and durations in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sync_jobs.progress import (
    PHASE_WEIGHTS,
    Phase,
    ProgressEvent,
    ProgressMeter,
    describe_fetch,
    human_bytes,
    phase_fraction,
)
from webhook_app.humanize import human_duration, iso_utc, time_ago, utc_text

FIRST_SYNC = [  # the pipeline's order on a first sync: the tarball comes before the diff
    ProgressEvent(Phase.RESOLVE, 0, 1),
    ProgressEvent(Phase.RESOLVE, 1, 1),
    ProgressEvent(Phase.FETCH, 0, 0),
    *[ProgressEvent(Phase.FETCH, n, 0) for n in (100, 1000, 5000, 20000)],
    ProgressEvent(Phase.FETCH, 20000, 20000),
    ProgressEvent(Phase.DIFF, 0, 1),
    ProgressEvent(Phase.DIFF, 1, 1),
    ProgressEvent(Phase.FETCH, 0, 3),  # what the archive lacked, by blob calls
    ProgressEvent(Phase.FETCH, 3, 3),
    ProgressEvent(Phase.APPLY, 0, 485),
    ProgressEvent(Phase.APPLY, 485, 485),
]
DELTA_SYNC = [
    ProgressEvent(Phase.RESOLVE, 0, 1),
    ProgressEvent(Phase.RESOLVE, 1, 1),
    ProgressEvent(Phase.DIFF, 0, 1),
    ProgressEvent(Phase.DIFF, 1, 1),
    *[ProgressEvent(Phase.FETCH, n, 40) for n in range(0, 41, 5)],
    ProgressEvent(Phase.RETRY, 0, 0, "GitHub unavailable (will be retried)"),
    ProgressEvent(Phase.RESOLVE, 0, 1),  # the retried run starts over; the bar does not
    ProgressEvent(Phase.APPLY, 0, 8),
    ProgressEvent(Phase.APPLY, 8, 8),
]
NOOP_SYNC = [ProgressEvent(Phase.RESOLVE, 0, 1), ProgressEvent(Phase.RESOLVE, 1, 1)]
RESTORE = [ProgressEvent(Phase.DIFF, 0, 1), ProgressEvent(Phase.APPLY, 0, 9)]
FINAL = ProgressEvent(Phase.DONE, 1, 1, "synced", outcome="succeeded")


@pytest.mark.parametrize("events", [FIRST_SYNC, DELTA_SYNC, NOOP_SYNC, RESTORE])
def test_one_bar_never_goes_back_and_ends_at_100(events: list[ProgressEvent]) -> None:
    meter = ProgressMeter()
    percents = [meter.update(event) for event in [*events, FINAL]]
    assert percents == sorted(percents), percents
    assert percents[0] < 5 and percents[-1] == 100.0
    assert all(0 <= p <= 100 for p in percents)


def test_phases_get_their_weights_in_the_usual_order() -> None:
    meter = ProgressMeter()
    total = sum(PHASE_WEIGHTS.values())
    meter.update(ProgressEvent(Phase.RESOLVE, 1, 1))
    assert meter.percent == pytest.approx(100 * PHASE_WEIGHTS[Phase.RESOLVE] / total)
    meter.update(ProgressEvent(Phase.DIFF, 1, 1))
    meter.update(ProgressEvent(Phase.FETCH, 20, 40))
    done = PHASE_WEIGHTS[Phase.RESOLVE] + PHASE_WEIGHTS[Phase.DIFF]
    assert meter.percent == pytest.approx(100 * (done + PHASE_WEIGHTS[Phase.FETCH] / 2) / total)


def test_a_phase_of_unknown_length_approaches_its_end_without_reaching_it() -> None:
    fractions = [phase_fraction(n, 0) for n in (0, 10, 2000, 10**6)]
    assert fractions[0] == 0 and fractions[2] == 0.5
    assert fractions == sorted(fractions) and fractions[-1] < 1


def test_sizes_in_binary_units() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 10 * 1024, 1258291, 5 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "10 KiB",
        "1.2 MiB",
        "5.0 GiB",
    ]
    assert human_bytes(None) == "—"


def test_fetch_in_words() -> None:
    assert describe_fetch(files=12, total=40, size=1258291, source="fetching") == (
        "fetching: 12 of 40 files, 1.2 MiB"
    )
    assert describe_fetch(files=1234, total=0, size=512, source="reading the tarball") == (
        "reading the tarball: 1,234 files so far, 512 B"
    )


def test_times_ago_with_the_exact_time_kept() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    cases = {
        timedelta(seconds=2): "just now",
        timedelta(seconds=42): "42 s ago",
        timedelta(minutes=3, seconds=10): "3 min ago",
        timedelta(hours=5): "5 h ago",
        timedelta(days=12): "12 d ago",
        timedelta(days=400): "2025-10-27",
    }
    for ago, text in cases.items():
        assert time_ago(now - ago, now=now) == text
    naive = datetime(2026, 12, 1, 11, 57, 0)  # SQLite hands back naive UTC times
    assert time_ago(naive, now=now) == "3 min ago"
    assert utc_text(naive) == "2026-12-01 11:57:00 UTC"
    assert iso_utc(naive) == "2026-12-01T11:57:00+00:00"


def test_durations() -> None:
    assert [human_duration(s) for s in (None, 0.42, 12.4, 185, 7440)] == [
        "—",
        "0.42 s",
        "12 s",
        "3 min 5 s",
        "2 h 4 min",
    ]

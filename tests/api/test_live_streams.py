"""The streams pages follow (``/events``, ``/projects/<id>/events``), through the Flask
test client: heartbeats at the real interval, a queued sync with its progress and end,
resuming from ``Last-Event-ID``, and the bar's percentage over a real sync."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from models import SyncTrigger
from sync_jobs import defaults
from sync_jobs.changes import last_change_id
from sync_jobs.pipeline import execute_sync
from sync_jobs.redis_client import redis_connection
from sync_jobs.scheduling import request_sync
from tests.api.conftest import make_project, run_queued_jobs
from tests.api.sse_client import Message, messages
from tests.sync.conftest import Tracked, tracked  # noqa: F401 (a fixture)


def open_stream(client: FlaskClient, url: str, **headers: str) -> Iterator[Message]:
    response = client.get(url, headers=headers, buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    return messages(response.iter_encoded())


def until_final(stream: Iterator[Message], sync_id: int) -> list[Message]:
    got: list[Message] = []
    for message in stream:
        if message.comment:
            raise AssertionError(f"the stream went quiet before sync {sync_id} ended: {got}")
        got.append(message)
        if message.event == "final" and message.data and message.data["sync_id"] == sync_id:
            return got
    raise AssertionError("the stream ended early")


# The heartbeat is the stream's and Redis's; one backend is enough for 30 s of waiting.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_quiet_page_stream_sends_heartbeats_at_the_real_interval(
    client: FlaskClient, app_context: object
) -> None:
    assert defaults.SSE_HEARTBEAT_SECONDS == 15.0
    project = make_project()
    for url in ("/events", f"/projects/{project.id}/events"):
        stream = open_stream(client, url)
        started = time.monotonic()
        first = next(stream)
        waited = time.monotonic() - started
        assert first.comment == "heartbeat", first  # not "events unavailable (Redis)"
        assert defaults.SSE_HEARTBEAT_SECONDS - 1 <= waited <= defaults.SSE_HEARTBEAT_SECONDS + 5


def test_status_stream_carries_a_queued_sync_its_progress_and_end(
    client: FlaskClient, synced: Tracked
) -> None:
    after = last_change_id(redis_connection())
    synced.history.commit_random_change()
    synced.push()
    sync_id = request_sync(synced.project_id, trigger=SyncTrigger.PUSH).id
    run_queued_jobs()
    got = until_final(open_stream(client, f"/events?after={after}"), sync_id)
    kinds = [m.event for m in got]
    assert kinds[0] == "sync" and got[0].data is not None
    assert got[0].data == {
        "project_id": synced.project_id,
        "sync_id": sync_id,
        "status": "queued",
        "trigger": "push",
        "waiting_reason": None,
    }
    assert "progress" in kinds and kinds[-1] == "final"
    progress = [m.data for m in got if m.event == "progress" and m.data]
    assert {p["status"] for p in progress} == {"running"}
    assert {p["phase"] for p in progress} >= {"resolve", "diff", "apply"}
    final = got[-1].data
    assert final is not None and final["outcome"] == "succeeded" and final["percent"] == 100.0
    percents = [p["percent"] for p in progress] + [final["percent"]]
    assert percents == sorted(percents)
    assert all(m.id for m in got)

    # The project page's stream has the same changes of that project.
    own = until_final(
        open_stream(client, f"/projects/{synced.project_id}/events?after=0-0"), sync_id
    )
    assert [m.data for m in own if m.data and m.data.get("sync_id") == sync_id] == [
        m.data for m in got
    ]


def test_a_reconnect_resumes_after_last_event_id(client: FlaskClient, synced: Tracked) -> None:
    after = last_change_id(redis_connection(), project_id=synced.project_id)
    synced.history.commit_random_change()
    synced.push()
    sync_id = request_sync(synced.project_id, trigger=SyncTrigger.PUSH).id
    run_queued_jobs()
    url = f"/projects/{synced.project_id}/events?after={after}"
    everything = until_final(open_stream(client, url), sync_id)
    assert len(everything) >= 4
    cut = everything[1].id
    assert cut is not None
    # A browser reconnecting sends Last-Event-ID, which wins over the page's ?after=.
    rest = until_final(open_stream(client, url, **{"Last-Event-ID": cut}), sync_id)
    assert [m.id for m in rest] == [m.id for m in everything[2:]]
    bad = client.get(url, headers={"Last-Event-ID": "nonsense"})
    assert bad.status_code == 400


def test_first_sync_progress_never_goes_back_and_ends_at_100(
    client: FlaskClient,
    tracked: Tracked,  # noqa: F811 (the fixture imported above)
) -> None:
    sync_id = tracked.new_sync(SyncTrigger.INSTALL)  # the tarball path
    execute_sync(sync_id)
    got = until_final(
        open_stream(client, f"/projects/{tracked.project_id}/events?after=0-0"), sync_id
    )
    percents = [m.data["percent"] for m in got if m.data and m.event in ("progress", "final")]
    assert percents == sorted(percents) and percents[-1] == 100.0
    phases = [m.data["phase"] for m in got if m.data and m.event == "progress"]
    assert phases.index("fetch") < phases.index("diff")  # the tarball comes first

"""Server-sent events of a sync through the Flask test client, on both databases."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from models import SyncStatus
from sync_jobs import defaults
from sync_jobs.progress import Phase, ProgressEvent, ProgressPublisher
from sync_jobs.redis_client import redis_connection
from tests.api.conftest import add_sync, make_project
from tests.api.sse_client import Message, messages
from webhook_app.errors import InvalidParameterError
from webhook_app.sse import stream_id


def publish_all(sync_id: int, *events: ProgressEvent) -> list[str]:
    publisher = ProgressPublisher(redis_connection(), sync_id=sync_id)
    return [publisher.publish(event, force=True) or "" for event in events]


PROGRESS = [
    ProgressEvent(Phase.RESOLVE, 0, 1, "resolving"),
    ProgressEvent(Phase.FETCH, 5, 10, "fetching"),
    ProgressEvent(Phase.DONE, 1, 1, "synced abc", outcome="succeeded"),
]


def read_all(client: FlaskClient, url: str, **headers: str) -> list[Message]:
    response = client.get(url, headers=headers, buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    return list(messages(response.iter_encoded()))


def test_replays_everything_and_closes_after_final(
    client: FlaskClient, app_context: object
) -> None:
    sync = add_sync(make_project(), SyncStatus.SUCCEEDED)
    ids = publish_all(sync.id, *PROGRESS)
    got = read_all(client, f"/api/v1/events/project-sync/{sync.id}")
    assert [m.id for m in got] == ids
    assert [m.event for m in got] == ["progress", "progress", "final"]
    assert got[1].data == {
        "sync_id": sync.id,
        "phase": "fetch",
        "done": 5,
        "total": 10,
        "message": "fetching",
        "bytes": 0,
        "percent": 37.5,  # half of fetch: 72 of the 96 after resolve, diff not run yet
    }
    assert got[2].data is not None and got[2].data["outcome"] == "succeeded"


def test_replays_after_last_event_id(client: FlaskClient, app_context: object) -> None:
    sync = add_sync(make_project(), SyncStatus.SUCCEEDED)
    ids = publish_all(sync.id, *PROGRESS)
    got = read_all(client, f"/api/v1/events/project-sync/{sync.id}", **{"Last-Event-ID": ids[0]})
    assert [m.id for m in got] == ids[1:]


# The heartbeat is the stream's and Redis's; one backend is enough for its real interval.
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_heartbeat_then_live_event_then_close(client: FlaskClient, app_context: object) -> None:
    """A quiet stream outlives the Redis client's command timeout: at the real interval
    it sends a heartbeat, not "events unavailable (Redis)", and then carries on."""
    assert defaults.SSE_HEARTBEAT_SECONDS == 15.0
    sync = add_sync(make_project(), SyncStatus.RUNNING)
    response = client.get(f"/api/v1/events/project-sync/{sync.id}", buffered=False)
    stream = messages(response.iter_encoded())
    started = time.monotonic()
    first = next(stream)
    waited = time.monotonic() - started
    assert first.comment == "heartbeat" and first.event is None, first
    assert defaults.SSE_HEARTBEAT_SECONDS - 1 <= waited <= defaults.SSE_HEARTBEAT_SECONDS + 5
    # The generator runs only when read, so this lands while the client waits.
    publish_all(sync.id, PROGRESS[1])
    live = next(stream)
    assert live.event == "progress" and live.data is not None and live.data["done"] == 5
    publish_all(sync.id, PROGRESS[2])
    rest = list(stream)
    assert [m.event for m in rest if m.event] == ["final"]


def test_synthetic_final_when_the_stream_is_gone(
    client: FlaskClient, app_context: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "SSE_FINAL_GRACE_MS", 10)
    sync = add_sync(make_project(), SyncStatus.FAILED, error="branch deleted")
    (only,) = read_all(client, f"/api/v1/events/project-sync/{sync.id}")
    assert only.event == "final" and only.id is None
    assert only.data is not None
    assert only.data["outcome"] == "failed" and only.data["message"] == "branch deleted"


def test_final_row_with_partial_stream_gets_a_final_event(
    client: FlaskClient, app_context: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ's failure callback writes only the row; the stream ends with its retry event."""
    monkeypatch.setattr(defaults, "SSE_FINAL_GRACE_MS", 10)
    sync = add_sync(make_project(), SyncStatus.FAILED, error="gave up")
    publish_all(sync.id, ProgressEvent(Phase.RETRY, 0, 0, "will be retried"))
    got = read_all(client, f"/api/v1/events/project-sync/{sync.id}")
    assert [m.event for m in got] == ["progress", "final"]


def test_unknown_sync_and_bad_last_event_id(client: FlaskClient, app_context: object) -> None:
    assert client.get("/api/v1/events/project-sync/12345").status_code == 404
    sync = add_sync(make_project(), SyncStatus.QUEUED)
    # Not ids at all; a Unicode digit (str.isdigit takes it, Redis does not); past the
    # 64 bits of a part; signed; an empty part.
    for raw in ("nonsense", "\u00b2-0", f"{2**64}-0", "1-" + "9" * 21, "-1", "1-"):
        answer = client.get(
            f"/api/v1/events/project-sync/{sync.id}", headers={"Last-Event-ID": raw}
        )
        assert answer.status_code == 400, raw
        assert answer.json is not None
        assert "Last-Event-ID must be a stream id" in answer.json["error"]
    with pytest.raises(InvalidParameterError):
        stream_id("1-\u0663")  # an Arabic-Indic three
    largest = f"{2**64 - 1}-{2**64 - 1}"  # Redis's largest stream id
    assert stream_id(largest) == largest and stream_id("7") == "7"

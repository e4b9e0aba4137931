"""A page stream carries only the changes of projects the person may read: two people of
one organisation, signed in through the emulator, with different access on GitHub."""

from __future__ import annotations

from flask import Flask

from github_emulator import EmulatorServer
from sync_jobs.changes import ChangeKind, last_change_id, publish_change
from sync_jobs.redis_client import redis_connection
from tests.api.sse_client import Message, messages
from tests.install.conftest import (  # noqa: F401 (fixtures of signed-in people)
    Org,
    app_settings,
    backend,
    org,
    sign_in,
    working_directory,
)


def changes_seen(client: object, url: str, *, last_project: int) -> list[Message]:
    """Messages of a stream up to the change of ``last_project`` (published last)."""
    response = client.get(url, buffered=False)  # type: ignore[attr-defined]
    assert response.status_code == 200, response.status_code
    seen: list[Message] = []
    for message in messages(response.iter_encoded()):
        assert message.comment is None, f"the change of {last_project} never came: {seen}"
        seen.append(message)
        if message.data and message.data["project_id"] == last_project:
            return seen
    raise AssertionError("the stream ended")


def test_a_viewer_gets_no_events_of_hidden_projects(
    app: Flask,
    github_emulator: EmulatorServer,
    org: Org,  # noqa: F811 (the fixture imported above)
) -> None:
    people = {}
    for person in ("alice", "bob"):
        people[person] = app.test_client()
        sign_in(people[person], login=person)
    with app.app_context():
        redis = redis_connection()
        after = last_change_id(redis)
        # vault: nobody of the two; gadgets: alice; widgets (last): alice and bob.
        for name in ("vault", "gadgets", "widgets"):
            publish_change(
                redis, ChangeKind.SYNC, project_id=org.projects[name], sync_id=1, status="queued"
            )
    widgets = org.projects["widgets"]
    seen = {
        person: {
            m.data["project_id"]
            for m in changes_seen(c, f"/events?after={after}", last_project=widgets)
            if m.data
        }
        for person, c in people.items()
    }
    assert seen["alice"] == {org.projects["gadgets"], widgets}
    assert seen["bob"] == {widgets}
    bob = people["bob"]
    assert bob.get(f"/projects/{org.projects['vault']}/events").status_code == 404
    assert bob.get(f"/projects/{org.projects['gadgets']}/events").status_code == 404
    anonymous = app.test_client().get("/events")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]

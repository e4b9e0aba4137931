"""A signed-in person sees, in the API, the event stream and the pages, only the
projects of installations GitHub says they can access."""

from __future__ import annotations

from flask.testing import FlaskClient

from github_emulator.server import EmulatorServer
from models import SyncStatus
from tests.api.conftest import add_sync, make_project

from .conftest import sign_in
from .test_sign_in import two_installations  # noqa: F401 - fixture


def test_each_person_sees_only_their_installations_projects(
    client: FlaskClient,
    app_context: object,
    github_emulator: EmulatorServer,
    two_installations: dict[str, int],  # noqa: F811
) -> None:
    widgets = make_project(
        installation_github_id=two_installations["acme"], full_name="acme/widgets"
    )
    gadgets = make_project(
        installation_github_id=two_installations["globex"], full_name="globex/gadgets"
    )
    gadgets_sync = add_sync(gadgets, SyncStatus.SUCCEEDED, sequence=1)

    assert client.get("/api/v1/projects").status_code == 401  # anonymous

    github_emulator.signed_in_user = "alice"
    sign_in(client)
    listed = client.get("/api/v1/projects").json["items"]
    assert [p["id"] for p in listed] == [widgets.id]
    assert client.get(f"/api/v1/projects/{widgets.id}/status").status_code == 200
    assert client.get(f"/api/v1/projects/{gadgets.id}/status").status_code == 404
    assert client.get(f"/api/v1/events/project-sync/{gadgets_sync.id}").status_code == 404
    page = client.get("/").get_data(as_text=True)
    assert "acme/widgets" in page and "globex/gadgets" not in page
    assert client.get(f"/projects/{gadgets.id}").status_code == 404

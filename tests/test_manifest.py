"""app.yml is a complete GitHub App manifest."""

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "app.yml"


def test_manifest_names_every_event_and_permission_the_app_needs() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["name"] and manifest["description"] and manifest["url"].startswith("https://")
    assert manifest["hook_attributes"]["url"].endswith("/webhooks/github")
    assert manifest["hook_attributes"]["active"] is True
    assert manifest["redirect_url"] and manifest["setup_url"] and manifest["callback_urls"]
    assert manifest["public"] is False
    # installation and installation_repositories reach every App regardless of
    # default_events; GitHub still accepts them listed, and listing them documents intent.
    assert {"push", "installation", "installation_repositories", "repository"} <= set(
        manifest["default_events"]
    )
    assert manifest["default_permissions"] == {"contents": "read", "metadata": "read"}

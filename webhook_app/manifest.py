"""The GitHub App manifest from ``app.yml``, with the URLs of the host the app runs on.

Pure: reads ``app.yml`` once and returns plain data; no Flask, no HTTP. ``app.yml``
holds example.com placeholders for every URL GitHub calls back on; the setup page
replaces them with ``<base>/...`` so the registered App points at this deployment.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "app.yml"
"""The manifest the repository ships; a fork renames its App there."""

WEBHOOK_PATH = "/webhooks/github"
SETUP_COMPLETE_PATH = "/setup/complete"
LOGIN_CALLBACK_PATH = "/login/callback"
SETUP_URL_PATH = "/"
"""Where GitHub sends a person after they install the App (``?installation_id=``)."""

ORGANIZATION_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
"""GitHub's rule for account names: letters, digits, single inner hyphens, 39 at most.
Checked because the name becomes part of a URL path on GitHub."""


@cache
def _template(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return loaded


def build_manifest(
    base_url: str, *, webhook_url: str | None = None, path: Path = MANIFEST_PATH
) -> dict[str, Any]:
    """``app.yml`` with every callback URL under ``base_url`` (no trailing slash).

    Deliveries go to ``webhook_url`` when given (a smee.io channel, ``WEBHOOK_PROXY_URL``,
    as Probot does: GitHub cannot reach a laptop). Everything else (name, description,
    homepage, events, permissions) is kept as written, so a change to ``app.yml``
    reaches the next registration unchanged.
    """
    base = base_url.rstrip("/")
    manifest = copy.deepcopy(_template(path))
    manifest["hook_attributes"] = {
        **(manifest.get("hook_attributes") or {}),
        "url": webhook_url or base + WEBHOOK_PATH,
    }
    manifest["redirect_url"] = base + SETUP_COMPLETE_PATH
    manifest["callback_urls"] = [base + LOGIN_CALLBACK_PATH]
    manifest["setup_url"] = base + SETUP_URL_PATH
    return manifest


def registration_url(web_url: str, *, organization: str | None = None) -> str:
    """GitHub's "create an App from a manifest" page, for the person or an organisation."""
    if organization is None:
        return f"{web_url}/settings/apps/new"
    if not ORGANIZATION_NAME.match(organization):
        raise ValueError(f"not a GitHub organisation name: {organization!r}")
    return f"{web_url}/organizations/{organization}/settings/apps/new"


def installation_url(web_url: str, *, slug: str) -> str:
    """The page where a person installs the App on their accounts."""
    return f"{web_url}/apps/{slug}/installations/new"

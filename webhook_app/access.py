"""Who may see what: the installations a signed-in person can access on GitHub.

Contract for every page and API view: call :func:`visible_installation_ids` and show only
projects whose repository belongs to one of those installations. ``None`` means "no
restriction" and is returned only when sign-in is not configured (no
``GITHUB_CLIENT_ID``): a development or demo setup with nobody to tell apart.
"""

from __future__ import annotations


def visible_installation_ids() -> frozenset[int] | None:
    """GitHub installation ids the current person can access, or None for all."""
    return None

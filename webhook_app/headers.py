"""Security headers on every response: a strict Content-Security-Policy and friends.

A few lines rather than flask-talisman: talisman's defaults redirect every request to
https (webhooks and health checks behind a TLS-ending proxy would break) and it would
still need this policy spelled out. Here the policy is one string, tested, and set on
every response the app makes, errors included:

- ``script-src 'self'``: no inline script and no ``on...=`` handlers (the pages load
  ``static/*.js`` only); ``style-src 'self'``: no inline styles;
- ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``: the resync and restore
  forms cannot be framed and clicked through (clickjacking);
- ``form-action 'self'`` plus GitHub's web host: the setup page posts the manifest
  there, nothing else leaves the site;
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` (an OAuth
  callback URL never reaches another site), ``Cross-Origin-Opener-Policy``;
- ``Strict-Transport-Security`` when ``PUBLIC_URL`` is https (only then is it known
  that browsers reach the app over TLS);
- ``Cache-Control: no-store`` unless a view chose its own: pages and API answers hold
  private repository contents, and no shared cache may keep them.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

HSTS_SECONDS = 2 * 365 * 24 * 60 * 60
"""``max-age`` of Strict-Transport-Security (two years, the preload lists' minimum)."""

STATIC_CACHE = "public, max-age=300"
"""Static files change only with a deploy; five minutes keeps a deploy visible soon."""


def content_security_policy(*, github_web_url: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            f"form-action 'self' {github_web_url}",
        ]
    )


def _secure_headers(response: Response) -> Response:
    config = current_app.config
    headers = response.headers
    headers.setdefault(
        "Content-Security-Policy",
        content_security_policy(github_web_url=config["GITHUB_WEB_URL"]),
    )
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if (config.get("PUBLIC_URL") or "").startswith("https://"):
        headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
    if "Cache-Control" not in headers:
        static = request.endpoint == "static"
        headers["Cache-Control"] = STATIC_CACHE if static else "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(_secure_headers)

"""Server-side sessions in Redis: the browser holds a random id, nothing else.

Flask's own session is a signed cookie that anyone holding it can read, and sign-in
keeps a GitHub user token in the session. Here the cookie carries only 32 random bytes
(the session id). Redis keeps the session under the SHA-256 of that id, encrypted
(Fernet) with a key derived from the id and ``SECRET_KEY``: reading Redis (a dump, a
replica, a shared instance) yields neither a usable cookie nor a token, and deleting
the key ends the session on every web process at once, which is what sign-out and a
copied cookie need.

Why not Flask-Session: it keeps the data in Redis as plain msgpack under the id the
cookie carries, so whoever reads Redis holds every session. These few lines give
encryption at rest, an expiry that follows the GitHub token (``EXPIRES_KEY``), and use
the app's own Redis client and key prefix.

Failure modes: Redis down while a request reads its session gives an empty session
(the person looks signed out for that request; nothing is shown that needs sign-in);
Redis down at save loses the change and logs a warning. A request without the cookie
(GitHub's deliveries, load balancers, scripts with a bearer token) never touches Redis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import Flask, Request, Response
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface, SessionMixin
from redis.exceptions import RedisError
from werkzeug.datastructures import CallbackDict

from sync_jobs import defaults, keys
from sync_jobs.redis_client import redis_connection

log = logging.getLogger(__name__)

EXPIRES_KEY = "_expires_at"
"""Session key: when the session ends (Unix time). Sign-in sets it from the GitHub
token; without it a session lives ``SESSION_ANONYMOUS_TTL_SECONDS`` from its last
change."""

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""What ``secrets.token_urlsafe(32)`` makes; any other cookie value is ignored unread."""

_serializer = TaggedJSONSerializer()


class ServerSession(CallbackDict[str, Any], SessionMixin):
    """A session whose data lives in Redis; :meth:`regenerate` moves it to a new id."""

    def __init__(self, initial: dict[str, Any] | None = None, *, sid: str | None) -> None:
        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.new = sid is None
        self.modified = False
        self.rotate = False

    def regenerate(self) -> None:
        """Keep the data under a fresh id, the old one dropped: a sign-in must not reuse
        an id someone else may have planted in the browser (session fixation)."""
        self.rotate = True
        self.modified = True


def _storage_key(sid: str) -> str:
    return keys.session_key(hashlib.sha256(sid.encode()).hexdigest())


def _secret(app: Flask) -> bytes:
    key = app.secret_key or ""
    return key.encode() if isinstance(key, str) else key


def _cipher(secret_key: bytes, sid: str) -> Fernet:
    derived = hmac.new(secret_key, b"session:" + sid.encode(), hashlib.sha256)
    return Fernet(base64.urlsafe_b64encode(derived.digest()))


class RedisSessionInterface(SessionInterface):
    """Flask's session interface over :class:`ServerSession`."""

    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(self.get_cookie_name(app))
        if not sid or not SESSION_ID.match(sid):
            return ServerSession(sid=None)
        try:
            stored: bytes | None = redis_connection(app).get(_storage_key(sid))  # type: ignore[assignment]
        except RedisError as exc:
            log.warning("session unavailable (Redis: %s); treating the request as anonymous",
                        type(exc).__name__)
            return ServerSession(sid=None)
        if stored is None:
            return ServerSession(sid=None)
        try:
            data = _serializer.loads(_cipher(_secret(app), sid).decrypt(stored).decode())
        except (InvalidToken, ValueError):
            # SECRET_KEY changed, or the entry was not written by us: start over.
            return ServerSession(sid=None)
        if not isinstance(data, dict) or data.get(EXPIRES_KEY, float("inf")) <= time.time():
            return ServerSession(sid=None)
        return ServerSession(data, sid=sid)

    def save_session(
        self, app: Flask, session: SessionMixin, response: Response
    ) -> None:
        assert isinstance(session, ServerSession)
        name = self.get_cookie_name(app)
        if not session.modified:
            return
        redis = redis_connection(app)
        expires_at = float(
            session.get(EXPIRES_KEY, time.time() + defaults.SESSION_ANONYMOUS_TTL_SECONDS)
        )
        ttl = int(expires_at - time.time())
        ended = not session or ttl <= 0
        try:
            if session.sid is not None and (session.rotate or ended):
                redis.delete(_storage_key(session.sid))
            if ended:
                if session.sid is not None:
                    response.delete_cookie(
                        name, domain=self.get_cookie_domain(app), path=self.get_cookie_path(app)
                    )
                return
            sid = session.sid if session.sid and not session.rotate else secrets.token_urlsafe(32)
            payload = _cipher(_secret(app), sid).encrypt(
                _serializer.dumps(dict(session)).encode()
            )
            redis.set(_storage_key(sid), payload, ex=ttl)
        except RedisError as exc:
            log.warning("session not saved (Redis: %s)", type(exc).__name__)
            return
        response.set_cookie(
            name,
            sid,
            max_age=ttl,
            httponly=self.get_cookie_httponly(app),
            secure=self.get_cookie_secure(app),
            samesite=self.get_cookie_samesite(app),
            domain=self.get_cookie_domain(app),
            path=self.get_cookie_path(app),
        )
        response.vary.add("Cookie")


def init_app(app: Flask) -> None:
    app.session_interface = RedisSessionInterface()

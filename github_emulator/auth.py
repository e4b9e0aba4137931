"""Who is calling: App JWTs, installation tokens, OAuth user tokens, or nobody.

GitHub's rules are copied because the app's token cache depends on them: a JWT must
be RS256-signed by the App's key with ``iat`` not in the future and ``exp`` at most
ten minutes ahead; tokens expire and then answer 401 like unknown ones.
"""

from __future__ import annotations

import base64
import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt

from . import defaults
from .errors import UnauthorizedError
from .state import AccessToken, EmulatorState, GitHubApp, Installation


class CallerKind(StrEnum):
    APP = "app"
    INSTALLATION = "installation"
    USER = "user"
    OAUTH_CLIENT = "oauth_client"  # Basic client_id:client_secret (/applications/...)
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of one request."""

    kind: CallerKind
    app: GitHubApp | None = None
    installation: Installation | None = None
    token: AccessToken | None = None
    login: str | None = None
    address: str = ""

    @property
    def rate_key(self) -> str:
        """The budget this caller spends; GitHub keeps one per installation/App/user."""
        if self.kind is CallerKind.INSTALLATION and self.installation:
            return f"installation:{self.installation.id}"
        if self.kind is CallerKind.APP and self.app:
            return f"app:{self.app.id}"
        if self.kind is CallerKind.USER:
            return f"user:{self.login}"
        return f"address:{self.address}"

    @property
    def authenticated(self) -> bool:
        return self.kind is not CallerKind.ANONYMOUS


def verify_app_jwt(state: EmulatorState, token: str) -> GitHubApp:
    """The App that signed ``token``; 401 with GitHub's wording when it is not valid."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise UnauthorizedError("A JSON web token could not be decoded") from error
    issuer = str(claims.get("iss", ""))
    app = state.find_app(issuer)
    if app is None:
        raise UnauthorizedError(f"Integration not found for issuer {issuer!r}")
    try:
        jwt.decode(token, app.public_key_pem, algorithms=["RS256"],
                   options={"verify_exp": False, "verify_iat": False,
                            "require": ["iat", "exp", "iss"]})
    except jwt.PyJWTError as error:
        raise UnauthorizedError("A JSON web token could not be decoded") from error
    now = time.time()
    iat, exp = float(claims["iat"]), float(claims["exp"])
    if iat > now + defaults.JWT_CLOCK_SKEW_SECONDS:
        raise UnauthorizedError("'Issued at' claim ('iat') must be an Integer "
                                "representing a time in the past.")
    if exp <= now:
        raise UnauthorizedError("'Expiration time' claim ('exp') must be a numeric value "
                                "representing the future time at which the assertion "
                                "expires.")
    if exp > now + defaults.JWT_MAX_LIFETIME_SECONDS + defaults.JWT_CLOCK_SKEW_SECONDS:
        raise UnauthorizedError("'Expiration time' claim ('exp') is too far in the future")
    return app


TOKEN_ALPHABET = string.ascii_letters + string.digits
"""GitHub's tokens are a prefix and 36 letters or digits."""


def token_text(prefix: str) -> str:
    return prefix + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))


def issue_token(state: EmulatorState, *, ttl: int, prefix: str,
                installation_id: int | None = None, user_login: str | None = None,
                repository_ids: set[int] | None = None, app_id: int | None = None,
                refresh_token: str | None = None) -> AccessToken:
    """Mint a token (``ghs_`` installation, ``gho_`` user) valid for ``ttl`` seconds."""
    # Exact to the microsecond: the answer shows whole seconds (rounded down, so clients
    # renew a moment early), and a short test TTL is not cut by up to a second.
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    token = AccessToken(token_text(prefix), expires,
                        installation_id=installation_id, user_login=user_login,
                        repository_ids=repository_ids, app_id=app_id,
                        refresh_token=refresh_token)
    with state.lock:
        state.tokens[token.token] = token
    return token


def issue_personal_token(state: EmulatorState, *, login: str,
                         token: str | None = None) -> AccessToken:
    """A personal access token (``ghp_``) of ``login`` that never expires, as GitHub's
    "No expiration" tokens; ``token`` fixes its text (the demo's well-known token)."""
    never = datetime.max.replace(tzinfo=UTC)
    personal = AccessToken(token or token_text(defaults.TOKEN_PREFIX_PERSONAL), never,
                           user_login=login)
    with state.lock:
        state.tokens[personal.token] = personal
    return personal


def identify_git(state: EmulatorState, authorization: str | None, address: str) -> Caller:
    """The caller of a git smart HTTP request.

    git sends a token as the password of HTTP Basic; GitHub ignores the username
    (``x-access-token`` is customary for installation tokens) and accepts no account
    password, so neither does this. ``Bearer`` works too (``http.extraHeader``). An App
    JWT cannot fetch or push: 401, as for any credential that is not a live token.
    """
    if not authorization:
        return Caller(CallerKind.ANONYMOUS, address=address)
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credential.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError) as error:
            raise UnauthorizedError("Bad credentials") from error
        authorization = f"token {decoded.partition(':')[2]}"
    caller = identify(state, authorization, address)
    if caller.kind is not CallerKind.INSTALLATION and caller.kind is not CallerKind.USER:
        raise UnauthorizedError("Bad credentials")
    return caller


def identify(state: EmulatorState, authorization: str | None, address: str) -> Caller:
    """Resolve the ``Authorization`` header. A JWT is recognised by its two dots; any
    other bearer or ``token`` credential must be a live token the emulator issued."""
    if not authorization:
        return Caller(CallerKind.ANONYMOUS, address=address)
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() == "basic":
        return _oauth_client(state, credential, address)
    if scheme.lower() not in ("bearer", "token") or not credential:
        raise UnauthorizedError("Bad credentials")
    if credential.count(".") == 2:
        return Caller(CallerKind.APP, app=verify_app_jwt(state, credential), address=address)
    with state.lock:
        token = state.tokens.get(credential)
    if token is None or token.expires_at <= datetime.now(UTC):
        raise UnauthorizedError("Bad credentials")
    if token.installation_id is not None:
        with state.lock:
            installation = state.installations.get(token.installation_id)
        if installation is None:
            raise UnauthorizedError("Bad credentials")
        return Caller(CallerKind.INSTALLATION, installation=installation, token=token,
                      app=state.apps.get(installation.app_id), address=address)
    return Caller(CallerKind.USER, token=token, login=token.user_login, address=address)


def _oauth_client(state: EmulatorState, credential: str, address: str) -> Caller:
    """Basic ``client_id:client_secret``: the App as an OAuth client."""
    try:
        client_id, _, client_secret = base64.b64decode(credential).decode().partition(":")
    except (ValueError, UnicodeDecodeError) as error:
        raise UnauthorizedError("Bad credentials") from error
    with state.lock:
        app = next((a for a in state.apps.values() if a.client_id == client_id), None)
    if app is None or not secrets.compare_digest(app.client_secret, client_secret):
        raise UnauthorizedError("Bad credentials")
    return Caller(CallerKind.OAUTH_CLIENT, app=app, address=address)

"""Settings: defaults in one object, real values from the environment, checked at start.

Only :func:`webhook_app.create_app` calls :func:`settings_from_environment`; nothing
else reads ``os.environ``. Names follow Probot where Probot has one (``APP_ID``,
``PRIVATE_KEY``/``PRIVATE_KEY_PATH``, ``WEBHOOK_SECRET``, ``GITHUB_CLIENT_ID``,
``GITHUB_CLIENT_SECRET``) so an App moved from Probot keeps its ``.env``.

Every check raises :class:`ConfigError` naming the variable, because a bad value found
at start costs a redeploy, while one found at the first webhook costs lost deliveries.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync_jobs import defaults, keys
from sync_jobs.logs import LOG_FORMATS, LOG_LEVELS
from webhook_app.errors import ConfigError

PERMISSIONS = ("pull", "triage", "push", "maintain", "admin")
"""GitHub's repository permissions, weakest first (the keys of a repository's
``permissions`` object)."""

PUBLIC_DASHBOARD_CHOICES = ("off", "read")
"""``off``: reading needs sign-in; ``read``: anyone reads every project, acting still
needs a signed-in person with the permission."""

LOOPBACK_HOST = "127.0.0.1"
"""Where the web process listens unless told otherwise (only this machine reaches it)."""

ALL_INTERFACES = "0.0.0.0"
"""Where it listens when ``PUBLIC_URL`` names another host."""


class DefaultConfig:
    """Defaults for every setting; the environment overrides them."""

    GITHUB_API_URL = "https://api.github.com"
    # Where people sign in and register Apps; github.com for GitHub, the same host as
    # the API for GitHub Enterprise Server and the emulator.
    GITHUB_WEB_URL = "https://github.com"
    APP_ID: int | None = None
    PRIVATE_KEY: str | None = None
    WEBHOOK_SECRETS: tuple[str, ...] = ()
    GITHUB_CLIENT_ID: str | None = None
    GITHUB_CLIENT_SECRET: str | None = None
    DATABASE_URL: str | None = None  # None: a SQLite file under the instance folder
    REDIS_URL = "redis://127.0.0.1:6379/0"
    # Names every key, queue and job id the app writes to Redis (sync_jobs.keys), so
    # deployments with different prefixes can share one Redis database.
    REDIS_KEY_PREFIX = keys.DEFAULT_KEY_PREFIX
    SECRET_KEY: str | None = None
    # The app's public base URL (https://sync.example.com), used in the App manifest,
    # OAuth redirects and cookie flags; None: the URL each request came in on.
    PUBLIC_URL: str | None = None
    # The address the web process listens on (gunicorn.conf.py reads the same rule);
    # None: 0.0.0.0 when PUBLIC_URL names another host, else 127.0.0.1 only.
    WEB_HOST: str | None = None
    # "read" lets anyone read every project without signing in (actions still need a
    # signed-in person with ACTION_PERMISSION); "off" requires sign-in once an App is
    # configured, unless the app answers on 127.0.0.1 only with sign-in not set up.
    PUBLIC_DASHBOARD = "off"
    # The least permission on a repository GitHub must show for a person before they
    # may resync, restore or track branches of it.
    ACTION_PERMISSION = "push"
    # GitHub caps webhook payloads at 25 MB; anything larger is not from GitHub.
    MAX_WEBHOOK_BYTES = 25 * 1024 * 1024
    # Files larger than this keep SHA and size only; their content is not stored.
    SYNC_MAX_BLOB_BYTES = 1024 * 1024
    # How syncs read GitHub: "auto" fetches over git's smart HTTP and falls back to the
    # REST API on any failure, "rest" uses the REST API only, "git" retries git failures.
    SYNC_TRANSPORT = "auto"
    # On uninstall or repository removal: delete the stored data (True) or keep it
    # readable but stop syncing (False).
    PURGE_ON_UNINSTALL = False
    # The maintenance process: how often the repair pass checks that every unfinished
    # sync has a live job, and how often the reconcilers compare branch heads and look
    # for deliveries GitHub could not deliver.
    REPAIR_INTERVAL_SECONDS = defaults.REPAIR_INTERVAL_SECONDS
    RECONCILE_INTERVAL_SECONDS = defaults.RECONCILE_INTERVAL_SECONDS
    REDELIVER_INTERVAL_SECONDS = defaults.REDELIVER_INTERVAL_SECONDS
    # A sync that keeps meeting GitHub outages is retried with backoff this long after it
    # was requested before it is marked failed (rate limits never count against it).
    SYNC_RETRY_DEADLINE_SECONDS = defaults.SYNC_RETRY_DEADLINE_SECONDS
    # A sync or restore request equal to one made this many seconds ago (same project,
    # kind, parameters) gets that request's sync instead of a second one.
    SYNC_REQUEST_DEDUP_SECONDS = defaults.SYNC_REQUEST_DEDUP_SECONDS
    # Retention, applied by the maintenance process's retention pass (run at this
    # interval): a finished delivery keeps its payload this many days and its row
    # longer; RQ keeps a finished or failed job at most this many seconds; a sync's
    # progress stream lives at most this long once the pass has seen it.
    DELIVERY_PAYLOAD_RETENTION_DAYS = defaults.DELIVERY_PAYLOAD_RETENTION_DAYS
    DELIVERY_RETENTION_DAYS = defaults.DELIVERY_RETENTION_DAYS
    JOB_RESULT_TTL_SECONDS = defaults.JOB_RESULT_TTL_SECONDS
    SYNC_EVENTS_RETENTION_SECONDS = defaults.SYNC_EVENTS_RETENTION_SECONDS
    RETENTION_INTERVAL_SECONDS = defaults.RETENTION_INTERVAL_SECONDS
    # Logs: the lowest level written, and json (one object a line, for log pipelines)
    # or text (for people reading a terminal).
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "json"
    # A bearer token /metrics requires (Authorization: Bearer ...); None: /metrics is
    # open to anyone who can reach it, so keep it off the public internet.
    METRICS_TOKEN: str | None = None
    # A smee.io channel (https://smee.io/...) whose deliveries `flask webhook-proxy`
    # forwards to this app's webhook endpoint, for development on a laptop; None: off.
    WEBHOOK_PROXY_URL: str | None = None
    # Pages and jobs ping a pooled connection before use, so the first request after a
    # database restart does not fail. The webhook receiver has its own engine without
    # the ping (a round trip per delivery) and with autocommit (its INSERT is the whole
    # transaction); it retries that INSERT once on a fresh connection instead.
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": True}
    RECEIVER_ENGINE_OPTIONS: dict[str, Any] = {
        "pool_pre_ping": False,
        "isolation_level": "AUTOCOMMIT",
    }


def _url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            name, f"must be a URL starting with {' or '.join(schemes)}://, got {value!r}"
        )
    return value.rstrip("/")


def _public_url(value: str) -> str:
    """A base URL GitHub can send people and deliveries to: scheme and host, maybe a path.

    A query or fragment would be mangled when paths are appended to it, so it is refused.
    """
    url = _url("PUBLIC_URL", value, ("http", "https"))
    parts = urlsplit(url)
    if not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "PUBLIC_URL", f"must be a base URL like https://sync.example.com, got {value!r}"
        )
    return url


def _key_prefix(value: str) -> str:
    if not keys.KEY_PREFIX_PATTERN.fullmatch(value):
        raise ConfigError(
            "REDIS_KEY_PREFIX",
            "must be 1 to 40 letters, digits, '-' or '_', starting with a letter or digit "
            f"(it becomes part of RQ queue names and job ids), got {value!r}",
        )
    return value


def _database_url(value: str) -> str:
    # Heroku-style hosts hand out postgres:// URLs; SQLAlchemy 2 wants a driver name.
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            value = "postgresql+psycopg://" + value[len(prefix) :]
    try:
        make_url(value)
    except ArgumentError as exc:
        raise ConfigError("DATABASE_URL", f"is not a database URL: {exc}") from exc
    return value


def _private_key(environ: Mapping[str, str]) -> str | None:
    """The App's PEM private key, from PRIVATE_KEY or the file at PRIVATE_KEY_PATH."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if environ.get("PRIVATE_KEY"):
        name, pem = "PRIVATE_KEY", environ["PRIVATE_KEY"].replace("\\n", "\n")
    elif environ.get("PRIVATE_KEY_PATH"):
        name = "PRIVATE_KEY_PATH"
        try:
            pem = Path(environ[name]).read_text()
        except OSError as exc:
            raise ConfigError(name, f"cannot be read: {exc.strerror} ({environ[name]})") from exc
    else:
        return None
    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(name, "is not a PEM-encoded RSA private key without a password") from exc
    return pem


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _positive_int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ConfigError(name, f"must be a positive whole number, got {value!r}")
    return number


def _choice(name: str, value: str, choices: tuple[str, ...], *, upper: bool) -> str:
    normalised = value.strip().upper() if upper else value.strip().lower()
    if normalised not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return normalised


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_host(*, web_host: str | None, public_url: str | None) -> str:
    """The address the web process listens on: ``WEB_HOST``, else all interfaces when
    ``PUBLIC_URL`` names a host other people reach, else 127.0.0.1.

    Listening beyond this machine therefore always comes with a ``PUBLIC_URL``, which
    decides the manifest and sign-in URLs instead of a request's Host header.
    """
    if web_host:
        return web_host
    if public_url and not is_loopback(urlsplit(public_url).hostname or ""):
        return ALL_INTERFACES
    return LOOPBACK_HOST


def _access_settings(environ: Mapping[str, str], settings: dict[str, Any]) -> None:
    """Sign-in, the public dashboard, the action permission and where the app listens.

    Secure by default: an OAuth client is both halves or neither; an App reachable
    beyond 127.0.0.1 needs sign-in unless a read-only public dashboard is chosen.
    """
    client_id, client_secret = (
        environ.get("GITHUB_CLIENT_ID", "").strip(),
        environ.get("GITHUB_CLIENT_SECRET", "").strip(),
    )
    if client_id and not client_secret:
        raise ConfigError("GITHUB_CLIENT_SECRET", "is required with GITHUB_CLIENT_ID for sign-in")
    if client_secret and not client_id:
        raise ConfigError("GITHUB_CLIENT_ID", "is required with GITHUB_CLIENT_SECRET for sign-in")
    if client_id:
        settings.update(GITHUB_CLIENT_ID=client_id, GITHUB_CLIENT_SECRET=client_secret)
    if value := environ.get("PUBLIC_DASHBOARD", "").strip():
        settings["PUBLIC_DASHBOARD"] = _choice(
            "PUBLIC_DASHBOARD", value, PUBLIC_DASHBOARD_CHOICES, upper=False
        )
    if value := environ.get("ACTION_PERMISSION", "").strip():
        settings["ACTION_PERMISSION"] = _choice(
            "ACTION_PERMISSION", value, PERMISSIONS, upper=False
        )
    if value := environ.get("WEB_HOST", "").strip():
        settings["WEB_HOST"] = value
        if not is_loopback(value) and "PUBLIC_URL" not in settings:
            raise ConfigError(
                "PUBLIC_URL",
                f"is required when WEB_HOST={value} listens beyond this machine: it names "
                "the address GitHub and people use (manifest, sign-in callback, cookies)",
            )
    host = listen_host(web_host=settings.get("WEB_HOST"), public_url=settings.get("PUBLIC_URL"))
    if (
        environ.get("APP_ID")
        and not client_id
        and not is_loopback(host)
        and settings.get("PUBLIC_DASHBOARD") != "read"
    ):
        raise ConfigError(
            "GITHUB_CLIENT_ID",
            f"and GITHUB_CLIENT_SECRET are required: the app listens on {host}, beyond "
            "this machine, and without sign-in anyone could read and act on every "
            "project. Set them (the App's OAuth client), or PUBLIC_DASHBOARD=read for a "
            "read-only dashboard",
        )


REDELIVERY_WINDOW_DAYS = 3
"""GitHub redelivers deliveries of the last three days; a row must outlive that so a
redelivery is recognised as a duplicate."""


def _check_retention(settings: Mapping[str, Any]) -> None:
    rows = settings.get("DELIVERY_RETENTION_DAYS", DefaultConfig.DELIVERY_RETENTION_DAYS)
    payloads = settings.get(
        "DELIVERY_PAYLOAD_RETENTION_DAYS", DefaultConfig.DELIVERY_PAYLOAD_RETENTION_DAYS
    )
    if rows < max(REDELIVERY_WINDOW_DAYS, payloads):
        raise ConfigError(
            "DELIVERY_RETENTION_DAYS",
            f"must be at least {REDELIVERY_WINDOW_DAYS} (GitHub's redelivery window) and at "
            f"least DELIVERY_PAYLOAD_RETENTION_DAYS ({payloads}), got {rows}",
        )


def settings_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read and check every setting; return only those the environment sets.

    An App is either fully configured or not at all: with ``APP_ID`` set, a private
    key and a webhook secret are required (the app refuses to start rather than accept
    unverified deliveries). With none of them the app starts in setup mode, where
    ``/setup`` registers an App and the webhook endpoint refuses every delivery.
    """
    settings: dict[str, Any] = {}
    _service_settings(environ, settings)
    _sync_settings(environ, settings)
    _operation_settings(environ, settings)
    _app_settings(environ, settings)
    _access_settings(environ, settings)
    return settings


def _service_settings(environ: Mapping[str, str], settings: dict[str, Any]) -> None:
    """Where GitHub, the database and Redis are, and how the app is reached."""
    if value := environ.get("GITHUB_API_URL"):
        settings["GITHUB_API_URL"] = _url("GITHUB_API_URL", value, ("http", "https"))
        # An Enterprise or emulator host serves the web pages on the same origin.
        settings["GITHUB_WEB_URL"] = settings["GITHUB_API_URL"].removesuffix("/api/v3")
    if value := environ.get("GITHUB_WEB_URL"):
        settings["GITHUB_WEB_URL"] = _url("GITHUB_WEB_URL", value, ("http", "https"))
    if value := environ.get("DATABASE_URL"):
        settings["DATABASE_URL"] = _database_url(value)
    if value := environ.get("REDIS_URL"):
        settings["REDIS_URL"] = _url("REDIS_URL", value, ("redis", "rediss", "unix"))
    if value := environ.get("REDIS_KEY_PREFIX", "").strip():
        settings["REDIS_KEY_PREFIX"] = _key_prefix(value)
    if value := environ.get("PUBLIC_URL"):
        settings["PUBLIC_URL"] = _public_url(value)
    if value := environ.get("SECRET_KEY"):
        settings["SECRET_KEY"] = value


def _sync_settings(environ: Mapping[str, str], settings: dict[str, Any]) -> None:
    """Sizes, the transport, the maintenance intervals and the retention periods."""
    if value := environ.get("MAX_WEBHOOK_BYTES"):
        settings["MAX_WEBHOOK_BYTES"] = _positive_int("MAX_WEBHOOK_BYTES", value)
    if value := environ.get("SYNC_MAX_BLOB_BYTES"):
        settings["SYNC_MAX_BLOB_BYTES"] = _positive_int("SYNC_MAX_BLOB_BYTES", value)
    if value := environ.get("SYNC_TRANSPORT", "").strip():
        settings["SYNC_TRANSPORT"] = _choice(
            "SYNC_TRANSPORT", value, ("auto", "rest", "git"), upper=False
        )
    for name in (
        "REPAIR_INTERVAL_SECONDS",
        "RECONCILE_INTERVAL_SECONDS",
        "REDELIVER_INTERVAL_SECONDS",
        "SYNC_RETRY_DEADLINE_SECONDS",
        "SYNC_REQUEST_DEDUP_SECONDS",
        "DELIVERY_PAYLOAD_RETENTION_DAYS",
        "DELIVERY_RETENTION_DAYS",
        "JOB_RESULT_TTL_SECONDS",
        "SYNC_EVENTS_RETENTION_SECONDS",
        "RETENTION_INTERVAL_SECONDS",
    ):
        if value := environ.get(name):
            settings[name] = _positive_int(name, value)
    _check_retention(settings)


def _operation_settings(environ: Mapping[str, str], settings: dict[str, Any]) -> None:
    """Logs, metrics, the development webhook proxy and purging on uninstall."""
    if value := environ.get("LOG_LEVEL"):
        settings["LOG_LEVEL"] = _choice("LOG_LEVEL", value, LOG_LEVELS, upper=True)
    if value := environ.get("LOG_FORMAT"):
        settings["LOG_FORMAT"] = _choice("LOG_FORMAT", value, LOG_FORMATS, upper=False)
    if value := environ.get("METRICS_TOKEN", "").strip():
        settings["METRICS_TOKEN"] = value
    if value := environ.get("WEBHOOK_PROXY_URL", "").strip():
        settings["WEBHOOK_PROXY_URL"] = _url("WEBHOOK_PROXY_URL", value, ("http", "https"))
    if "PURGE_ON_UNINSTALL" in environ:
        settings["PURGE_ON_UNINSTALL"] = _boolean(
            "PURGE_ON_UNINSTALL", environ["PURGE_ON_UNINSTALL"]
        )


def _app_settings(environ: Mapping[str, str], settings: dict[str, Any]) -> None:
    """The App's id, key and webhook secrets: all of them, or none (setup mode)."""
    if value := environ.get("WEBHOOK_SECRET"):
        # A comma-separated list lets a secret be rotated without dropping deliveries.
        secrets_list = tuple(part.strip() for part in value.split(",") if part.strip())
        if not secrets_list:
            raise ConfigError("WEBHOOK_SECRET", "has no secret in it")
        settings["WEBHOOK_SECRETS"] = secrets_list
    private_key = _private_key(environ)
    if private_key is not None:
        settings["PRIVATE_KEY"] = private_key
    if value := environ.get("APP_ID"):
        settings["APP_ID"] = _positive_int("APP_ID", value)
        if private_key is None:
            raise ConfigError("PRIVATE_KEY", "or PRIVATE_KEY_PATH is required when APP_ID is set")
        if "WEBHOOK_SECRETS" not in settings:
            raise ConfigError(
                "WEBHOOK_SECRET", "is required when APP_ID is set; deliveries cannot be verified"
            )


def finish_settings(config: dict[str, Any], instance_path: str) -> None:
    """Fill the settings that derive from others, after defaults and overrides merged."""
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{Path(instance_path) / 'project_sync.sqlite3'}"
    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret_key(Path(instance_path))
    # True when nobody but this machine reaches the web process: the only case in which
    # pages and the API may run without sign-in (the demo, development).
    config["LOCAL_ONLY"] = is_loopback(
        listen_host(web_host=config.get("WEB_HOST"), public_url=config.get("PUBLIC_URL"))
    )


def _instance_secret_key(instance: Path) -> str:
    """A random key kept in the instance folder, so development sessions survive restarts.

    Production sets SECRET_KEY; several web processes must share one key.
    """
    path = instance / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
        return key

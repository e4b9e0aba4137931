"""Every number and header name the emulator shares, defined once.

The values copy what github.com does today, so code tested against the emulator
meets the same limits in production. Knobs start from these and tests change them.
"""

API_VERSION = "2022-11-28"
"""The REST API version the emulator claims to speak (``X-GitHub-Api-Version-Selected``)."""

MEDIA_TYPE_HEADER = "github.v3; format=json"
"""Value of ``X-GitHub-Media-Type`` on every JSON answer."""

DOCS_URL = "https://docs.github.com/rest"
"""``documentation_url`` in error bodies; GitHub points at its REST docs."""

TREE_MAX_ENTRIES = 100_000
"""GitHub truncates a tree listing past this many entries."""

TREE_MAX_BYTES = 7_000_000
"""...or past this many bytes of JSON, whichever comes first."""

TOKEN_TTL_SECONDS = 3600
"""Installation and user tokens live one hour, as on GitHub."""

REFRESH_TOKEN_TTL_SECONDS = 15_897_600
"""GitHub's refresh tokens (``ghr_``) last six months; each works once."""

JWT_MAX_LIFETIME_SECONDS = 600
"""GitHub refuses App JWTs whose ``exp`` lies more than ten minutes ahead."""

JWT_CLOCK_SKEW_SECONDS = 60
"""Drift GitHub tolerates between the App's clock and its own."""

RATE_LIMIT_AUTHENTICATED = 5000
"""Requests per window for an installation, App or user token."""

RATE_LIMIT_ANONYMOUS = 60
"""Requests per window without credentials."""

RATE_LIMIT_WINDOW_SECONDS = 3600
"""Length of a primary rate-limit window."""

RATE_LIMIT_RESOURCE = "core"
"""``X-RateLimit-Resource`` of every endpoint the emulator serves."""

SECONDARY_LIMIT_RETRY_AFTER_SECONDS = 60
"""``Retry-After`` of a secondary-limit answer unless a test sets another."""

FAULT_HANG_SECONDS = 30.0
"""How long a ``timeout`` fault holds a request before resetting the connection."""

PER_PAGE_DEFAULT = 30
"""Page size when a list request names none."""

PER_PAGE_MAX = 100
"""GitHub ignores larger ``per_page`` values and serves this many."""

PUSH_COMMITS_MAX = 2048
"""A push payload lists at most this many commits, as GitHub's does."""

COMMIT_FILES_MAX = 300
"""``GET /commits/{ref}`` and compare list at most this many files."""

COMPARE_COMMITS_MAX = 250
"""Compare lists at most this many commits."""

ARCHIVE_LINK_TTL_SECONDS = 300
"""Lifetime of the one-off URL a tarball request redirects to."""

HOOKSHOT_USER_AGENT = "GitHub-Hookshot/emulator"
"""``User-Agent`` of webhook deliveries; receivers may check the prefix."""

WEBHOOK_TIMEOUT_SECONDS = 10.0
"""GitHub gives a receiver ten seconds before it marks a delivery failed."""

DELIVERY_RETENTION_SECONDS = 3 * 24 * 60 * 60
"""GitHub lists and redelivers only the deliveries of the last three days."""

DELIVERY_CURSOR_PREFIX = "v1_"
"""GitHub's delivery-list cursors look like ``v1_<id>``; clients treat them as opaque."""

DELIVERY_STATUS_OK = "OK"
"""``status`` of a delivery the receiver answered with a 2xx."""

DELIVERY_STATUS_INVALID = "Invalid HTTP Response: {status_code}"
"""``status`` of a delivery the receiver answered with anything else."""

DELIVERY_STATUS_UNREACHABLE = "failed to connect to host"
"""``status`` when no connection could be made (``status_code`` 0)."""

DELIVERY_STATUS_TIMED_OUT = "timed out"
"""``status`` when the receiver did not answer in time (``status_code`` 0)."""

DELIVERY_STATUS_NO_URL = "No webhook URL configured"
"""``status`` of an event logged for an App without a webhook URL (nothing is sent)."""

INTERNAL_PREFIX = "/_emulator"
"""Paths under this prefix control the emulator; they are not GitHub's."""

URL_FILE_NAME = ".emulator-url"
"""File in the data folder holding the running server's URL, read by git hooks."""

EMPTY_TREE_SHA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""Git's well-known empty tree, the ``before`` side of a branch creation diff."""

ZERO_SHA = "0" * 40
"""What git and GitHub write for "no commit" in ``before``/``after``."""

TOKEN_PREFIX_PERSONAL = "ghp_"
"""GitHub's prefix for personal access tokens (classic)."""

DEMO_LOGIN = "demo"
"""The person who owns the demo repository (``demo/sample``)."""

DEMO_PERSONAL_TOKEN = "ghp_DemoTokenForTheLocalGitHubEmulator00"
"""A personal access token of ``demo`` that every emulator accepts, for the REST API
and for git over HTTP (``http://demo:<token>@127.0.0.1:8765/demo/sample.git``). It is
printed in the README on purpose: the emulator serves loopback demos and tests only."""

GIT_AUTH_REALM = "GitHub"
"""Realm of the ``WWW-Authenticate: Basic`` challenge git's credential helpers see."""

GIT_SERVER_CONFIG = (
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowAnySHA1InWant", "true"),
    ("http.uploadpack", "true"),
    ("http.receivepack", "true"),
)
"""What github.com allows over smart HTTP: partial clone filters and any object in a
``want``; receive-pack is on because the emulator has checked write access first."""

GIT_STREAM_CHUNK_BYTES = 64 * 1024
"""Most bytes read from git at a time while a pack streams to the client."""

GIT_BACKEND_EXIT_SECONDS = 30.0
"""How long a finished or abandoned ``git http-backend`` may take to exit before it is
killed (a push's post-receive hook sends its webhooks in that time)."""

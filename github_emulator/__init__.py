"""A local GitHub for tests, benchmarks and the demo, backed by real git repositories.

Quick start::

    from github_emulator import EmulatorServer
    from github_emulator.history import generate_repository, push

    with EmulatorServer(tmp_path / "github") as server:      # free loopback port
        repo = server.create_repository("octo", "docs")     # bare repo + hook
        generate_repository(tmp_path / "work", seed=1, files=200, directories=20)
        server.webhook_url = "http://127.0.0.1:5000/webhooks/github"
        installation_id = server.install("octo", [repo])     # installation.created
        push(tmp_path / "work", server.clone_url(repo))       # push webhook, synchronous
        # or over HTTP, as from GitHub: git clone/fetch/push server.http_clone_url(repo)
        # with a token as the Basic password (testing.with_credentials)

        gh = GitHub(AppInstallationAuthStrategy(server.app_id, server.private_key_pem,
                    installation_id), base_url=server.url + "/")

Python API (see each docstring for the why):

- :class:`EmulatorServer` ``(data_dir, *, host, port)``: ``start()/stop()``, ``url``,
  ``app_id``, ``private_key_pem``, ``webhook_secret``, ``webhook_url`` (settable),
  ``create_repository``, ``install``, ``add_repositories``, ``remove_repositories``,
  ``suspend``, ``unsuspend``, ``accept_new_permissions``, ``uninstall``,
  ``rename_repository``, ``transfer_repository``, ``delete_repository``,
  ``grant`` (a person's role on a repository), ``set_base_permission`` (an
  organisation members' default), ``send_webhook``, ``ping``, ``redeliver``,
  ``age_delivery``, ``deliveries``, ``knobs``, ``http_clone_url`` (smart HTTP at
  ``<url>/<owner>/<repo>.git``), ``personal_token`` (a ``ghp_`` token of a person),
  ``rate_limiter``, ``request_counts()``, ``reset_counts()``, ``reset_knobs()``.
- ``server.knobs``: ``latency``, ``tree_max_entries``, ``tree_max_bytes``,
  ``webhook_content_type``, ``token_ttl``, ``fault_hang_seconds``, ``webhook_timeout``,
  ``drop_webhooks_for``,
  ``add_fault(pattern, kind, count=, method=)``, ``clear_faults()``.
- ``server.rate_limiter``: ``configure(limit=, window=)``,
  ``arm_secondary(count=, status=, retry_after=)``.
- :mod:`github_emulator.history`: seeded repository histories to push.
- :mod:`github_emulator.testing`: pytest fixtures (``github_emulator``, ...).
- HTTP control for other processes under ``/_emulator`` (see
  :mod:`github_emulator.control`).
- git over HTTP (:mod:`github_emulator.smart_http`): a token as the Basic password
  (``x-access-token`` + installation token; any username + personal or user token;
  every emulator accepts ``demo`` + ``defaults.DEMO_PERSONAL_TOKEN``); public
  repositories clone anonymously; a push sends ``push`` webhooks before it returns.
"""

from .counters import RequestCounts
from .deliveries import DeliveryRecord
from .emulator import Emulator
from .knobs import FaultKind, WebhookContentType
from .server import EmulatorServer

__all__ = ["DeliveryRecord", "Emulator", "EmulatorServer", "FaultKind", "RequestCounts",
           "WebhookContentType"]

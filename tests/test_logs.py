"""JSON log lines: their fields, context ids across threads and work horses, redaction."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from redis import Redis
from rq import Queue, Worker, get_current_job

from sync_jobs import logs
from sync_jobs.logs import configure_logging, current_context, log_context, redact
from tests.conftest import base_settings, reset_redis
from tests.webhooks.conftest import free_port
from webhook_app import create_app
from webhook_app.access import ROUTE_RULES, RouteRule
from webhook_app.config import settings_from_environment
from webhook_app.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
LOG = logging.getLogger("tests.test_logs")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures the root logger; put back what it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, quiet_level in quiet.items():
        logging.getLogger(name).setLevel(quiet_level)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_line_is_one_json_object_with_utc_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    LOG.info("stored %d deliveries", 3)
    LOG.debug("not at INFO")
    [line] = json_lines(capsys.readouterr().err)
    assert line["level"] == "INFO"
    assert line["logger"] == "tests.test_logs"
    assert line["message"] == "stored 3 deliveries"
    assert line["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    assert abs(time.time() - stamp.timestamp()) < 60


def test_exceptions_go_in_the_same_object(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    try:
        raise RuntimeError("GitHub answered 502")
    except RuntimeError:
        LOG.exception("sync failed")
    [line] = json_lines(capsys.readouterr().err)
    assert line["message"] == "sync failed"
    assert "RuntimeError: GitHub answered 502" in line["exc_info"]


def test_context_ids_nest_merge_and_unwind(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    with log_context(delivery_id="d-1", installation_id=31337):
        with log_context(project_id=7, sync_id=42, repository="octo/widgets"):
            LOG.info("inner")
            with log_context(sync_id=43, job_id=None):
                LOG.info("innermost")
        LOG.info("outer")
    LOG.info("outside")
    inner, innermost, outer, outside = json_lines(capsys.readouterr().err)
    assert {k: inner[k] for k in logs.CONTEXT_FIELDS if k in inner} == {
        "delivery_id": "d-1",
        "installation_id": 31337,
        "project_id": 7,
        "sync_id": 42,
        "repository": "octo/widgets",
    }
    assert innermost["sync_id"] == 43 and "job_id" not in innermost
    assert outer["delivery_id"] == "d-1" and "sync_id" not in outer
    assert not set(logs.CONTEXT_FIELDS) & set(outside)


def test_an_unknown_id_is_refused() -> None:
    with pytest.raises(TypeError, match="sync_idd"), log_context(sync_idd=1):
        pass


def test_context_follows_copied_contexts_into_threads(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    seen: dict[str, Any] = {}

    def work(name: str) -> None:
        seen[name] = dict(current_context())
        LOG.info("from %s", name)

    with log_context(sync_id=9):
        copied = threading.Thread(target=contextvars.copy_context().run, args=(work, "copied"))
        plain = threading.Thread(target=work, args=("plain",))
        for thread in (copied, plain):
            thread.start()
            thread.join()
    assert seen == {"copied": {"sync_id": 9}, "plain": {}}
    lines = {line["message"]: line for line in json_lines(capsys.readouterr().err)}
    assert lines["from copied"]["sync_id"] == 9
    assert "sync_id" not in lines["from plain"]


def log_in_work_horse(sync_id: int) -> str:
    """An RQ job: logs inside a context carrying its own job id."""
    job = get_current_job()
    assert job is not None
    with log_context(sync_id=sync_id, job_id=job.id):
        logging.getLogger("tests.work_horse").info("pid %d", os.getpid())
    return "done"


def test_context_ids_in_an_rq_work_horse(redis_url: str, capfd: pytest.CaptureFixture[str]) -> None:
    """The job runs in a forked work horse, as in production; its lines carry its ids."""
    reset_redis(redis_url)
    configure_logging("INFO")
    connection = Redis.from_url(redis_url)
    queue = Queue("project-sync-test-logs", connection=connection)
    job = queue.enqueue(log_in_work_horse, 5)
    Worker([queue], connection=connection).work(burst=True)
    assert job.get_status(refresh=True) == "finished", job.latest_result()
    lines = json_lines(capfd.readouterr().err)
    [line] = [line for line in lines if line["logger"] == "tests.work_horse"]
    assert line["message"] != f"pid {os.getpid()}"  # logged by another process
    assert (line["sync_id"], line["job_id"]) == (5, job.id)
    reset_redis(redis_url)


def test_text_format_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text")
    with log_context(sync_id=3, project_id=1):
        LOG.warning("slow: ?token=abc")
    line = capsys.readouterr().err.strip()
    assert line.endswith("WARNING tests.test_logs [project_id=1 sync_id=3] slow: ?token=[REDACTED]")


def test_configuring_again_or_after_basic_config_never_doubles_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))  # basicConfig's kind
    configure_logging("INFO")
    configure_logging("INFO")
    LOG.info("once")
    assert len(json_lines(capsys.readouterr().err)) == 1


def test_bad_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("LOUD")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("INFO", "xml")


# --- Redaction ---------------------------------------------------------------------------

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)
JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDYwMCwiaXNzIjoiMTIzIn0"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)

SECRETS = [
    # (case, text as logged, the secret that must vanish, what stays)
    (
        "installation token",
        "token ghs_16C7e42F292c6912E7710c838347Ae178B4a minted",
        "16C7e42F",
        "ghs_",
    ),
    ("user token", "user ghu_abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghij", "ghu_"),
    ("oauth token", "oauth gho_abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghij", "gho_"),
    ("personal token", "pat ghp_abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghij", "ghp_"),
    (
        "fine-grained token",
        "pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "11ABCDEFG",
        "github_pat_",
    ),
    (
        "codeload token",
        "GET https://codeload.github.com/o/r/legacy.tar.gz/refs/heads/main?token=AABBCCDD123",
        "AABBCCDD123",
        "legacy.tar.gz",
    ),
    (
        "access_token",
        "answer access_token=secretvalue42&token_type=bearer",
        "secretvalue42",
        "token_type",
    ),
    ("oauth code", "GET /auth/callback?code=oauthcode77&state=xyz", "oauthcode77", "state=xyz"),
    (
        "client_secret",
        "POST body client_id=Iv1.abc&client_secret=shh99",
        "shh99",
        "client_id=Iv1.abc",
    ),
    (
        "bearer header",
        "headers Authorization: Bearer opaque.bearer.value",
        "opaque.bearer",
        "Bearer",
    ),
    (
        "token header",
        "{'Authorization': 'token ghs_abcdefghijklmnop'}",
        "abcdefghijklmnop",
        "token",
    ),
    ("basic header", "authorization=Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNz", "Basic"),
    (
        "git url",
        "git fetch https://x-access-token:v1.0123456789abcdef@github.com/o/r.git",
        "v1.0123456789abcdef",
        "github.com/o/r.git",
    ),
    ("jwt", f"app jwt {JWT} for app 123", "c2lnbmF0dXJl", "for app 123"),
    ("pem block", f"key is {PEM} end", "MIIEowIBAAKCAQEA", "end"),
    ("cut pem block", PEM[:80], "MIIEowIBAAKC", "[REDACTED]"),
    (
        "json document",
        '{"token": "opaque-value", "expires_at": "2030"}',
        "opaque-value",
        "expires_at",
    ),
]


@pytest.mark.parametrize(("case", "text", "secret", "kept"), SECRETS, ids=[s[0] for s in SECRETS])
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_are_redacted_from_message_and_args(
    capsys: pytest.CaptureFixture[str], case: str, text: str, secret: str, kept: str, fmt: str
) -> None:
    configure_logging("INFO", fmt)
    LOG.info(text)
    LOG.info("formatted: %s", text)
    LOG.info("mapping: %(value)s", {"value": text})
    output = capsys.readouterr().err
    assert secret not in output
    assert kept in output
    assert output.count("[REDACTED]") >= 3
    if fmt == "json":
        assert len(json_lines(output)) == 3


@pytest.mark.parametrize(("case", "text", "secret", "kept"), SECRETS, ids=[s[0] for s in SECRETS])
def test_redaction_is_idempotent(case: str, text: str, secret: str, kept: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_secrets_in_tracebacks_and_extra_fields_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    try:
        raise httpx.HTTPStatusError(
            "404 for https://codeload.github.com/o/r?token=TRACEBACKSECRET",
            request=httpx.Request("GET", "https://codeload.github.com/o/r?token=TRACEBACKSECRET"),
            response=httpx.Response(404),
        )
    except httpx.HTTPError:
        LOG.exception("download failed", extra={"url": "https://x?access_token=EXTRASECRET"})
    output = capsys.readouterr().err
    assert "TRACEBACKSECRET" not in output and "EXTRASECRET" not in output
    [line] = json_lines(output)
    assert "token=[REDACTED]" in line["exc_info"]
    assert line["url"] == "https://x?access_token=[REDACTED]"


def _tarball_transport() -> httpx.MockTransport:
    """GitHub's tarball endpoint: a redirect to codeload with a token in the query."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.github.com":
            location = (
                "https://codeload.github.com/octo/widgets/legacy.tar.gz/refs/heads/main"
                "?token=CODELOADSECRET42"
            )
            return httpx.Response(302, headers={"Location": location})
        return httpx.Response(200, content=b"tarball bytes")

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_httpx_never_logs_the_codeload_token(
    capsys: pytest.CaptureFixture[str], level: str
) -> None:
    """At INFO httpx's request lines are off; at DEBUG they show, without the token."""
    configure_logging(level)
    with httpx.Client(transport=_tarball_transport(), follow_redirects=True) as client:
        response = client.get(
            "https://api.github.com/repos/octo/widgets/tarball/main",
            headers={"Authorization": "token ghs_HEADERSECRET1234567"},
        )
    assert response.content == b"tarball bytes"
    output = capsys.readouterr().err
    assert "CODELOADSECRET42" not in output and "HEADERSECRET" not in output
    requests = [line for line in json_lines(output) if line["logger"] == "httpx"]
    if level == "INFO":
        assert requests == []
    else:
        assert [line["message"].split()[:3] for line in requests] == [
            ["HTTP", "Request:", "GET"],
            ["HTTP", "Request:", "GET"],
        ]
        assert "?token=[REDACTED]" in requests[1]["message"]


# --- Settings and processes --------------------------------------------------------------


def test_log_settings_are_checked() -> None:
    assert settings_from_environment({"LOG_LEVEL": "debug", "LOG_FORMAT": "TEXT"}) == {
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "text",
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_environment({"LOG_LEVEL": "loud"})
    assert caught.value.name == "LOG_LEVEL"
    with pytest.raises(ConfigError) as caught:
        settings_from_environment({"LOG_FORMAT": "xml"})
    assert caught.value.name == "LOG_FORMAT"


def test_the_factory_configures_logging(tmp_path: Path, redis_url: str) -> None:
    settings = base_settings(f"sqlite:///{tmp_path / 'db.sqlite3'}", redis_url, str(tmp_path))
    create_app({**settings, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "text"})
    root = logging.getLogger()
    [handler] = [h for h in root.handlers if isinstance(h, logs.StderrHandler)]
    assert isinstance(handler.formatter, logs.TextFormatter)
    assert root.level == logging.WARNING
    assert logging.getLogger("httpx").level == logging.WARNING


@pytest.fixture
def gunicorn(tmp_path: Path, redis_url: str) -> Iterator[tuple[str, Path, Path]]:
    """gunicorn with the project's config and the access log on; its URL, stdout, stderr."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "DATABASE", "LOG_"))}
    env.update(
        PORT=str(port),
        WEB_CONCURRENCY="1",
        WEB_ACCESS_LOG="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL=redis_url,
        SECRET_KEY="test",
        PYTHONPATH=str(ROOT),
    )
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"gunicorn did not start:\n{err.read_text()}")
                time.sleep(0.1)
        yield url, out, err
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_gunicorn_lines_are_json_and_its_access_log_redacted(
    gunicorn: tuple[str, Path, Path],
) -> None:
    url, out, err = gunicorn
    urllib.request.urlopen(f"{url}/healthz?code=OAUTHCODE123&state=s", timeout=5)
    time.sleep(0.3)  # the access line is written after the answer
    errors = json_lines(err.read_text())
    assert any(
        line["logger"] == "gunicorn.error" and "Booting worker" in line["message"]
        for line in errors
    )
    access = [line for line in json_lines(out.read_text()) if line["logger"] == "gunicorn.access"]
    [callback] = [line for line in access if "state=s" in line["message"]]
    assert "OAUTHCODE123" not in callback["message"]
    assert "code=[REDACTED]" in callback["message"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_an_unhandled_exception_is_one_redacted_json_line(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask's own error log (an unhandled exception in a view) has the same shape."""
    configure_logging("INFO")
    # Every endpoint needs an access rule or it is refused before the view runs.
    monkeypatch.setitem(ROUTE_RULES, "boom", RouteRule.PUBLIC)

    @app.get("/_boom")
    def boom() -> str:
        raise RuntimeError("boom with ghs_abcdefghijklmnopqrst")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.testing = False
    stream: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stream.append(self.format(record))

    collector = logs.prepare_handler(Collect())
    logging.getLogger().addHandler(collector)
    try:
        assert app.test_client().get("/_boom").status_code == 500
    finally:
        logging.getLogger().removeHandler(collector)
    [line] = [json.loads(s) for s in stream if "Exception on /_boom" in s]
    assert "RuntimeError: boom with ghs_[REDACTED]" in line["exc_info"]

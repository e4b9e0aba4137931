"""The factory: defaults on a clean checkout, test config kept apart, bad env refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flask import Flask

from webhook_app import create_app

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("APP_ID", "DATABASE_URL")}
    environment.update(env)
    environment["PYTHONPATH"] = str(REPOSITORY_ROOT)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_test_config_differs_from_defaults(app: Flask) -> None:
    assert app.testing
    assert not create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"}).testing


def test_defaults_start_on_sqlite_under_instance(tmp_path: Path) -> None:
    """A clean checkout with no environment starts: SQLite in instance/, setup mode."""
    result = run_python(
        "from webhook_app import create_app\n"
        "app = create_app()\n"
        "print(app.config['DATABASE_URL'])\n"
        "print(app.config['APP_ID'])\n"
        "print(app.test_client().get('/healthz').status_code)\n",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    database_url, app_id, status = result.stdout.split()
    assert database_url.startswith("sqlite:///") and "/instance/" in database_url
    assert app_id == "None"
    assert status == "200"


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/0\nSECRET_KEY=dotenv\n")
    result = run_python(
        "from webhook_app import create_app\n"
        "app = create_app()\n"
        "print(app.config['REDIS_URL'], app.config['SECRET_KEY'])\n",
        cwd=tmp_path,
        SECRET_KEY="from-environment",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["redis://from-dotenv:6379/0", "from-environment"]


def test_malformed_environment_stops_the_start_with_its_name(tmp_path: Path) -> None:
    result = run_python(
        "from webhook_app import create_app\ncreate_app()\n", cwd=tmp_path, REDIS_URL="nonsense"
    )
    assert result.returncode != 0
    assert "ConfigError: REDIS_URL must be a URL" in result.stderr

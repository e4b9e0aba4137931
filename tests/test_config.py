"""Each missing or malformed setting stops the start with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from webhook_app.config import settings_from_environment
from webhook_app.errors import ConfigError


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def complete(pem: str, **overrides: str) -> dict[str, str]:
    environ = {"APP_ID": "12345", "PRIVATE_KEY": pem, "WEBHOOK_SECRET": "s3cret"}
    environ.update(overrides)
    return {k: v for k, v in environ.items() if v != "<unset>"}


def test_an_empty_environment_is_setup_mode() -> None:
    assert settings_from_environment({}) == {}


def test_a_complete_app_configuration(pem: str, tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    settings = settings_from_environment(
        {
            "APP_ID": "12345",
            "PRIVATE_KEY_PATH": str(key_file),
            "WEBHOOK_SECRET": "new-secret, old-secret",
            "GITHUB_API_URL": "http://127.0.0.1:9999/",
            "DATABASE_URL": "postgres://u@db.example/app",
            "REDIS_URL": "redis://cache:6379/2",
            "GITHUB_CLIENT_ID": "Iv1.abc",
            "GITHUB_CLIENT_SECRET": "shh",
            "PURGE_ON_UNINSTALL": "yes",
        }
    )
    assert settings["APP_ID"] == 12345
    assert settings["PRIVATE_KEY"] == pem
    assert settings["WEBHOOK_SECRETS"] == ("new-secret", "old-secret")
    assert settings["GITHUB_API_URL"] == "http://127.0.0.1:9999"
    assert settings["GITHUB_WEB_URL"] == "http://127.0.0.1:9999"
    assert settings["DATABASE_URL"] == "postgresql+psycopg://u@db.example/app"
    assert settings["PURGE_ON_UNINSTALL"] is True


def test_public_url_loses_its_trailing_slash_and_may_have_a_path() -> None:
    assert settings_from_environment({"PUBLIC_URL": "https://sync.example.com/"}) == {
        "PUBLIC_URL": "https://sync.example.com"
    }
    settings = settings_from_environment({"PUBLIC_URL": "http://127.0.0.1:5000/sync/"})
    assert settings["PUBLIC_URL"] == "http://127.0.0.1:5000/sync"


def test_escaped_newlines_in_private_key_are_accepted(pem: str) -> None:
    # Many hosts only take one-line variables, so Probot accepts "\n" escapes too.
    settings = settings_from_environment(complete(pem, PRIVATE_KEY=pem.replace("\n", "\\n")))
    assert settings["PRIVATE_KEY"] == pem


@pytest.mark.parametrize(
    ("overrides", "variable", "words"),
    [
        ({"APP_ID": "twelve"}, "APP_ID", "positive whole number"),
        ({"APP_ID": "-3"}, "APP_ID", "positive whole number"),
        ({"PRIVATE_KEY": "<unset>"}, "PRIVATE_KEY", "required when APP_ID is set"),
        ({"PRIVATE_KEY": "not a key"}, "PRIVATE_KEY", "PEM-encoded RSA private key"),
        ({"WEBHOOK_SECRET": "<unset>"}, "WEBHOOK_SECRET", "deliveries cannot be verified"),
        ({"WEBHOOK_SECRET": " , "}, "WEBHOOK_SECRET", "has no secret"),
        ({"GITHUB_API_URL": "api.github.com"}, "GITHUB_API_URL", "must be a URL"),
        ({"GITHUB_WEB_URL": "ftp://x"}, "GITHUB_WEB_URL", "must be a URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL", "must be a URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL", "is not a database URL"),
        ({"PURGE_ON_UNINSTALL": "maybe"}, "PURGE_ON_UNINSTALL", "true or false"),
        ({"MAX_WEBHOOK_BYTES": "lots"}, "MAX_WEBHOOK_BYTES", "positive whole number"),
        ({"SYNC_MAX_BLOB_BYTES": "0"}, "SYNC_MAX_BLOB_BYTES", "positive whole number"),
        ({"PUBLIC_URL": "sync.example.com"}, "PUBLIC_URL", "must be a URL"),
        ({"PUBLIC_URL": "https://sync.example.com/?x=1"}, "PUBLIC_URL", "base URL"),
        ({"PUBLIC_URL": "https:///no-host"}, "PUBLIC_URL", "base URL"),
    ],
)
def test_bad_settings_name_the_variable(
    pem: str, overrides: dict[str, str], variable: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_environment(complete(pem, **overrides))
    assert caught.value.name == variable
    assert str(caught.value).startswith(variable)
    assert words in str(caught.value)


def test_unreadable_private_key_file_is_named(pem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_environment(
            complete(pem, PRIVATE_KEY="<unset>", PRIVATE_KEY_PATH=str(tmp_path / "missing.pem"))
        )
    assert caught.value.name == "PRIVATE_KEY_PATH"
    assert "cannot be read" in str(caught.value) and "missing.pem" in str(caught.value)

"""The pure side of the receiver: signatures, headers, bodies (no app, no services)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from githubkit.webhooks import parse, sign

from tests.webhooks.conftest import PAYLOADS, encode, payload, signed_headers
from webhook_app import events
from webhook_app.errors import MalformedPayloadError, MissingHeaderError, SignatureError

SECRET = "s3cret"


def _parse(event: str, raw: bytes, content_type: str, **overrides: str | None) -> events.Delivery:
    headers = signed_headers(event, raw, content_type, secret=SECRET)
    for name, value in overrides.items():
        header = name.replace("_", "-")
        if value is None:
            headers.pop(header, None)
        else:
            headers[header] = value
    return events.parse_delivery(headers, raw, secrets=(SECRET,))


@pytest.mark.parametrize("path", sorted(PAYLOADS.glob("*.json")), ids=lambda p: p.stem)
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_every_recorded_payload_parses(path: Path, form: bool) -> None:
    event = path.name.split(".")[0]
    body = json.loads(path.read_text())
    parse(event, json.dumps(body))  # the recordings are shapes githubkit accepts
    raw, content_type = encode(body, form=form)
    delivery = _parse(event, raw, content_type)
    assert delivery.event == event
    assert delivery.action == body.get("action")
    assert (
        delivery.installation_github_id == body["installation"]["id"]
        if "installation" in body
        else True
    )
    assert delivery.body_text.encode() == raw  # exactly the signed bytes
    assert delivery.form_encoded is form
    assert delivery.rejection is None
    assert delivery.data == body


def test_rotated_secret_is_accepted() -> None:
    raw, content_type = encode(payload("push"))
    headers = signed_headers("push", raw, content_type, secret="new-secret")
    delivery = events.parse_delivery(headers, raw, secrets=("old-secret", "new-secret"))
    assert delivery.repository_github_id == 700001


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (None, "missing X-Hub-Signature-256 header"),
        ("sha256=" + "0" * 64, "does not match"),
        ("sha1=0123", "must be a sha256= HMAC"),
    ],
    ids=["missing", "forged", "sha1"],
)
def test_bad_signatures_are_refused(signature: str | None, message: str) -> None:
    raw, content_type = encode(payload("push"))
    with pytest.raises(SignatureError, match=message):
        _parse("push", raw, content_type, X_Hub_Signature_256=signature)


def test_sha1_only_signature_is_refused_even_when_correct() -> None:
    raw, content_type = encode(payload("push"))
    headers = signed_headers("push", raw, content_type, secret=SECRET)
    del headers["X-Hub-Signature-256"]
    assert headers["X-Hub-Signature"] == sign(SECRET, raw, "sha1")
    with pytest.raises(SignatureError, match="missing X-Hub-Signature-256"):
        events.parse_delivery(headers, raw, secrets=(SECRET,))


def test_signature_over_other_bytes_is_refused() -> None:
    raw, content_type = encode(payload("push"))
    headers = signed_headers("push", raw, content_type, secret=SECRET)
    with pytest.raises(SignatureError):
        events.parse_delivery(headers, raw + b" ", secrets=(SECRET,))


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_header_is_named(header: str) -> None:
    raw, content_type = encode(payload("push"))
    with pytest.raises(MissingHeaderError, match=f"missing {header} header"):
        _parse("push", raw, content_type, **{header.replace("-", "_"): None})


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b"\xff\xfe", "application/json", "not UTF-8"),
        (b'{"a": "\x00"}', "application/json", "NUL byte"),
        (b"payload=%7B%7D&x=\x00", "application/x-www-form-urlencoded", "NUL byte"),
    ],
)
def test_bodies_no_row_can_hold_are_refused(
    raw: bytes, content_type: str, message: str
) -> None:
    with pytest.raises(MalformedPayloadError, match=message):
        _parse("push", raw, content_type)


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (b'{"ref": ', "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "the payload is an array, not a JSON object"),
        (b"other=1", "application/x-www-form-urlencoded", "no payload field"),
        (b"payload=%7Bbroken", "application/x-www-form-urlencoded", "not valid JSON"),
        (b"payload=%7B%22a%22%3A%22%FF%22%7D", "application/x-www-form-urlencoded", "not UTF-8"),
    ],
)
def test_unusable_bodies_are_kept_as_rejected(raw: bytes, content_type: str, message: str) -> None:
    delivery = _parse("push", raw, content_type)
    assert delivery.rejection is not None and message in delivery.rejection
    assert delivery.body_text.encode() == raw


def test_unknown_fields_and_actions_are_kept_as_plain_json() -> None:
    body = payload("installation_repositories.added")
    body["action"] = "added_with_magic"
    body["brand_new_field"] = {"nested": True}
    raw, content_type = encode(body)
    with pytest.raises(ValueError):
        parse("installation_repositories", raw)  # the typed models refuse it ...
    delivery = _parse("installation_repositories", raw, content_type)
    assert delivery.action == "added_with_magic"  # ... the receiver does not
    assert delivery.installation_github_id == 31337


def test_events_module_does_no_io() -> None:
    tree = ast.parse(Path(events.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0]
        if isinstance(node, ast.ImportFrom)
        else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not imported & {"flask", "sqlalchemy", "redis", "rq", "models", "httpx"}

"""GitHub webhook deliveries as values: verify the signature, read the headers and body.

No I/O and no Flask here: the view hands over the headers and the raw body, and gets
back a :class:`Delivery` or a :class:`~sync_jobs.errors.WebhookRejectedError` whose
``status`` and message become the answer. Signatures are checked with githubkit's
pure ``verify`` helper (HMAC over the raw bytes, constant-time compare).

Only the few plain JSON fields the receiver stores are read (action, installation,
repository, hook); the typed githubkit models are not applied on this path, because
GitHub adds fields and enum values faster than SDK models follow and a delivery must
never be refused for that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from githubkit.webhooks import verify

from sync_jobs.errors import (
    MalformedPayloadError,
    MissingHeaderError,
    SignatureError,
)
from sync_jobs.keys import JOB_ID_SAFE

SIGNATURE_HEADER = "X-Hub-Signature-256"
"""HMAC-SHA256 of the raw body; the only signature accepted."""

LEGACY_SIGNATURE_HEADER = "X-Hub-Signature"
"""HMAC-SHA1 header GitHub still sends alongside; SHA-1 alone is refused."""

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
HOOK_ID_HEADER = "X-GitHub-Hook-ID"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
"""GitHub's other content type: the JSON document is the form field ``payload``."""

_DELIVERY_ID = re.compile(JOB_ID_SAFE)
_EVENT_NAME = re.compile(r"[a-z_]{1,64}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One verified delivery, with what the receiver stores about it."""

    # Event names stay plain strings: GitHub keeps adding events, and an unknown one
    # is stored and acknowledged, not refused.
    event: str
    delivery_id: str
    action: str | None
    hook_id: int | None
    installation_github_id: int | None
    repository_github_id: int | None
    payload_text: str
    data: Mapping[str, Any]


def verify_signature(body: bytes, *, signature: str | None, secrets: Sequence[str]) -> None:
    """Accept ``body`` only if ``signature`` is its SHA-256 HMAC under one of ``secrets``.

    Every configured secret is tried so a secret can be rotated without dropping
    deliveries. githubkit's ``verify`` would also accept a ``sha1=`` signature, so the
    algorithm is checked here first.
    """
    if not secrets:
        # The app factory refuses to start an App without a secret; this guards the
        # setup mode, where nothing can be verified.
        raise SignatureError("no webhook secret is configured; deliveries cannot be verified")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not signature.startswith("sha256="):
        raise SignatureError(f"{SIGNATURE_HEADER} must be a sha256= HMAC")
    if not any(verify(secret, body, signature) for secret in secrets):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the payload")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise MissingHeaderError(f"missing {name} header")
    return value


def _document(body: bytes, content_type: str) -> str:
    """The JSON text of the delivery, from a JSON body or the form field ``payload``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayloadError("body is not UTF-8") from exc
    if content_type.split(";", 1)[0].strip().lower() == FORM_CONTENT_TYPE:
        fields = parse_qs(text, keep_blank_values=True)
        values = fields.get("payload")
        if not values:
            raise MalformedPayloadError("form-encoded body has no payload field")
        return values[0]
    return text


def _github_id(data: Mapping[str, Any], field: str) -> int | None:
    value = data.get(field)
    if isinstance(value, Mapping):
        number = value.get("id")
        if isinstance(number, int) and not isinstance(number, bool):
            return number
    return None


def parse_delivery(
    headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str]
) -> Delivery:
    """Verify and read one delivery; raise a ``WebhookRejectedError`` saying what is wrong.

    The signature is checked before anything else, so an unsigned request learns
    nothing about what the endpoint would have accepted.
    """
    verify_signature(
        body,
        signature=headers.get(SIGNATURE_HEADER),
        secrets=secrets,
    )
    event = _header(headers, EVENT_HEADER)
    delivery_id = _header(headers, DELIVERY_HEADER)
    if not _EVENT_NAME.fullmatch(event):
        raise MalformedPayloadError(f"{EVENT_HEADER} is not an event name: {event[:64]!r}")
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise MalformedPayloadError(
            f"{DELIVERY_HEADER} is not a delivery GUID: {delivery_id[:64]!r}"
        )
    text = _document(body, headers.get("Content-Type", "application/json"))
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise MalformedPayloadError(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedPayloadError("payload is not a JSON object")
    action = data.get("action")
    hook_id = headers.get(HOOK_ID_HEADER)
    return Delivery(
        event=event,
        delivery_id=delivery_id,
        action=action if isinstance(action, str) else None,
        hook_id=int(hook_id) if hook_id and hook_id.isdigit() else None,
        installation_github_id=_github_id(data, "installation"),
        repository_github_id=_github_id(data, "repository"),
        payload_text=text,
        data=data,
    )

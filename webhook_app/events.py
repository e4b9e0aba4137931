"""GitHub webhook deliveries as values: verify the signature, read the headers and body.

No I/O and no Flask here: the view hands over the headers and the raw body, and gets
back a :class:`Delivery` or a :class:`~sync_jobs.errors.WebhookRejectedError` whose
``status`` and message become the answer. Signatures are checked with githubkit's
pure ``verify`` helper (HMAC over the raw bytes, constant-time compare).

Only the few plain JSON fields the receiver stores are read (action, installation,
repository, hook); the typed githubkit models are not applied on this path, because
GitHub adds fields and enum values faster than SDK models follow and a delivery must
never be refused for that.

A signed request is sorted in three by what can be kept of it:

- no row can be written (no usable ``X-GitHub-Event`` or ``X-GitHub-Delivery``, or a
  body that is not UTF-8 text a database can hold): a ``WebhookRejectedError``;
- a row can hold exactly the signed body, but something the receiver stores or the
  job needs is unusable (JSON that does not parse or nests too deep, an ``action``
  that is not a short string, an id out of range, a bad ``X-GitHub-Hook-ID``): a
  :class:`Delivery` with ``rejection`` saying why, stored as ``rejected``;
- everything usable: a :class:`Delivery` to store and process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from githubkit.webhooks import verify

from sync_jobs import payloads
from sync_jobs.errors import InvalidPayloadError
from sync_jobs.keys import JOB_ID_SAFE
from webhook_app.errors import MalformedPayloadError, MissingHeaderError, SignatureError

SIGNATURE_HEADER = "X-Hub-Signature-256"
"""HMAC-SHA256 of the raw body; the only signature accepted."""

LEGACY_SIGNATURE_HEADER = "X-Hub-Signature"
"""HMAC-SHA1 header GitHub still sends alongside; SHA-1 alone is refused."""

EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
HOOK_ID_HEADER = "X-GitHub-Hook-ID"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
"""GitHub's other content type: the JSON document is the form field ``payload``."""

ACTION_MAX_LENGTH = 64
"""Longest ``action`` the delivery row holds (``WebhookDelivery.action``)."""

MAX_REJECTION_LENGTH = 1000
"""A rejection reason is cut here: it names problems, it does not echo the payload."""

_DELIVERY_ID = re.compile(JOB_ID_SAFE)
_EVENT_NAME = re.compile(r"[a-z_]{1,64}")
_HOOK_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits only: "²".isdigit() is True

T = TypeVar("T")


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
    # The signed body itself, decoded as UTF-8 (strictly, so re-encoding gives back the
    # signed bytes): the row keeps exactly what was signed, form-encoded or not.
    body_text: str
    form_encoded: bool
    data: Mapping[str, Any] = field(default_factory=dict)
    # Why the delivery cannot be processed (stored as rejected), or None.
    rejection: str | None = None


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


def _body_text(body: bytes) -> str:
    """The body as text a row can hold, or a refusal: nothing else can be stored."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPayloadError(f"body is not UTF-8 (byte {exc.start})") from exc
    if "\x00" in text:
        raise MalformedPayloadError(f"body contains a NUL byte (byte {text.index(chr(0))})")
    return text


def _is_form(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == FORM_CONTENT_TYPE


def _checked(problems: list[str], read: Callable[[], T]) -> T | None:
    """``read()``, or None with its problem noted (every problem is reported at once)."""
    try:
        return read()
    except InvalidPayloadError as exc:
        problems.append(str(exc))
        return None


def _github_id(document: Mapping[str, Any], name: str) -> int | None:
    """``document[name]["id"]``; absent or null objects and ids are None."""
    holder = payloads.optional_mapping(document.get(name), field=name)
    if holder is None or holder.get("id") is None:
        return None
    return payloads.github_id(holder["id"], field=f"{name}.id")


def _hook_id(value: str | None) -> int | None:
    if not value:
        return None
    if not _HOOK_ID.fullmatch(value) or int(value) >= payloads.GITHUB_ID_LIMIT:
        raise InvalidPayloadError(
            f"{HOOK_ID_HEADER} must be a number below 2**63, got {value[:40]!a}"
        )
    return int(value)


def parse_delivery(
    headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str]
) -> Delivery:
    """Verify and read one delivery; raise a ``WebhookRejectedError`` saying what is wrong.

    The signature is checked before anything else, so an unsigned request learns
    nothing about what the endpoint would have accepted. A signed delivery that can be
    stored but not used comes back with ``rejection`` set (see the module docstring).
    """
    verify_signature(
        body,
        signature=headers.get(SIGNATURE_HEADER),
        secrets=secrets,
    )
    event = _header(headers, EVENT_HEADER)
    delivery_id = _header(headers, DELIVERY_HEADER)
    if not _EVENT_NAME.fullmatch(event):
        raise MalformedPayloadError(f"{EVENT_HEADER} is not an event name: {event[:64]!a}")
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise MalformedPayloadError(
            f"{DELIVERY_HEADER} is not a delivery GUID: {delivery_id[:64]!a}"
        )
    text = _body_text(body)
    form_encoded = _is_form(headers.get("Content-Type", "application/json"))
    problems: list[str] = []
    data = _checked(
        problems,
        lambda: payloads.read_document(payloads.document_text(text, form_encoded=form_encoded)),
    )
    document: Mapping[str, Any] = data or {}
    action = _checked(
        problems,
        lambda: payloads.optional_text(
            document.get("action"), field="action", max_length=ACTION_MAX_LENGTH
        ),
    )
    return Delivery(
        event=event,
        delivery_id=delivery_id,
        action=action,
        hook_id=_checked(problems, lambda: _hook_id(headers.get(HOOK_ID_HEADER))),
        installation_github_id=_checked(problems, lambda: _github_id(document, "installation")),
        repository_github_id=_checked(problems, lambda: _github_id(document, "repository")),
        body_text=text,
        form_encoded=form_encoded,
        data=document,
        rejection="; ".join(problems)[:MAX_REJECTION_LENGTH] or None,
    )

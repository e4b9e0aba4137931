"""Reading a delivery's payload: the JSON document inside a stored body, and its fields.

Pure (no I/O, no Flask, no database). The web app's receiver uses it
to decide whether a signed body can be stored and processed, the delivery job
(:mod:`sync_jobs.deliveries`) to read a stored body again, and the handlers
(:mod:`sync_jobs.installations`) to read the fields they write. Every failure is an
:class:`~sync_jobs.errors.InvalidPayloadError` whose message names the field: the same
payload fails the same way every time, so nothing here is worth a retry.

"Storable" is what the databases behind the models can hold: PostgreSQL text takes
any Unicode except NUL, and psycopg cannot encode a lone surrogate (JSON's ``"\\ud800"``
escape decodes to one); BIGINT takes integers below 2**63.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from sync_jobs.errors import InvalidPayloadError

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects accepted. GitHub's payloads stay under 10
levels; the limit keeps every later reader (``json.loads`` in a worker's deeper call
stack, logging, githubkit's models) far from Python's recursion limit of 1,000."""

MAX_FORM_FIELDS = 100
"""Fields a form-encoded body may have; GitHub sends one (``payload``)."""

GITHUB_ID_LIMIT = 2**63
"""GitHub ids are stored as BIGINT, which ends below this."""

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""Characters no text column can hold: NUL (PostgreSQL) and lone surrogates (UTF-8)."""

_JSON_KINDS = {
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (for messages)."""
    return _JSON_KINDS.get(type(value), type(value).__name__)


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored in a text column, or None if it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character"
    return f"contains a lone surrogate ({found.group()!a})"


def escape_unstorable(text: str) -> str:
    """``text`` with each character no column can hold written as its escape (``\\x00``,
    ``\\ud800``), for messages that quote a payload."""
    return _UNSTORABLE.sub(lambda found: ascii(found.group())[1:-1], text)


def document_text(body: str, *, form_encoded: bool) -> str:
    """The JSON text of a delivery: the body itself, or its form field ``payload``.

    Percent-decoding is strict: ``%FF`` is not UTF-8 and is refused, never replaced by
    U+FFFD (the document must be what was signed).
    """
    if not form_encoded:
        return body
    try:
        fields = parse_qs(
            body, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS
        )
    except UnicodeDecodeError as exc:
        raise InvalidPayloadError(
            "the form field payload is not UTF-8 once percent-decoded"
        ) from exc
    except ValueError as exc:
        raise InvalidPayloadError(
            f"the form-encoded body has more than {MAX_FORM_FIELDS} fields"
        ) from exc
    values = fields.get("payload")
    if not values:
        raise InvalidPayloadError("the form-encoded body has no payload field")
    return values[0]


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (no recursion)."""
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def read_document(text: str) -> dict[str, Any]:
    """Parse a delivery's JSON text into its top-level object."""
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise InvalidPayloadError(f"the payload nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        raise InvalidPayloadError(f"the payload is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidPayloadError(f"the payload is {json_kind(document)}, not a JSON object")
    # Nesting can be no deeper than the number of opening brackets (C-speed counts);
    # only a document with more of them than the limit is walked.
    brackets = text.count("{") + text.count("[")
    if brackets > MAX_DEPTH and _deeper_than(document, MAX_DEPTH):
        raise InvalidPayloadError(f"the payload nests deeper than {MAX_DEPTH} levels")
    return document


# --- fields ------------------------------------------------------------------------------


def github_id(value: Any, *, field: str) -> int:
    """A GitHub id: an integer from 1 to 2**63 - 1 (``true`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPayloadError(f"{field} must be a number, not {json_kind(value)}")
    if not 0 < value < GITHUB_ID_LIMIT:
        raise InvalidPayloadError(f"{field} must be between 1 and 2**63 - 1, got {value}")
    return value


def text(value: Any, *, field: str, max_length: int | None = None) -> str:
    """A string a text column can hold, at most ``max_length`` characters."""
    if not isinstance(value, str):
        raise InvalidPayloadError(f"{field} must be a string, not {json_kind(value)}")
    problem = unstorable(value)
    if problem is not None:
        raise InvalidPayloadError(f"{field} {problem}")
    if max_length is not None and len(value) > max_length:
        raise InvalidPayloadError(
            f"{field} is {len(value)} characters long; at most {max_length} fit"
        )
    return value


def optional_text(value: Any, *, field: str, max_length: int | None = None) -> str | None:
    """Like :func:`text`, but an absent or null value is None."""
    return None if value is None else text(value, field=field, max_length=max_length)


def mapping(value: Any, *, field: str) -> Mapping[str, Any]:
    """A JSON object."""
    if not isinstance(value, Mapping):
        raise InvalidPayloadError(f"{field} must be an object, not {json_kind(value)}")
    return value


def optional_mapping(value: Any, *, field: str) -> Mapping[str, Any] | None:
    """Like :func:`mapping`, but an absent or null value is None."""
    return None if value is None else mapping(value, field=field)


def mappings(value: Any, *, field: str) -> list[Mapping[str, Any]]:
    """A JSON array of objects; absent or null is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidPayloadError(f"{field} must be an array, not {json_kind(value)}")
    return [mapping(item, field=f"{field}[{index}]") for index, item in enumerate(value)]

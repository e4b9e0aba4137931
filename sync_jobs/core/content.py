"""What git calls binary, and how text that is not UTF-8 is decoded.

Git decides by one rule (``buffer_is_binary`` in git's ``xdiff-interface.c``): a blob is
binary when a NUL byte occurs in its first 8,000 bytes (``FIRST_FEW_BYTES``). Every
other blob is text to git, whatever its encoding (``git diff`` shows it line by line),
so it is text here too: a Latin-1 README, EUC-JP or Shift-JIS test data, a shell script
with a Latin-1 comment, a file whose first NUL comes after 8,000 bytes. UTF-16 has NUL
bytes in any mostly-ASCII text, so git (and this rule) calls it binary. Attributes
(``binary``, ``-diff``, ``working-tree-encoding`` in ``.gitattributes``) are not read.

Valid UTF-8 is decoded as UTF-8, exactly as before this rule existed. Anything else is
decoded by its declared or detected encoding, found by **charset-normalizer**
(``charset_normalizer.from_bytes``: it honours a declaration in the first bytes, such
as ``# -*- coding: latin-1 -*-`` or ``<meta charset="euc-jp">``, before it measures).
A decoding is accepted only when encoding the text again gives back the very same
bytes, so the text and the codec name together are the file exactly. Latin-1 maps
every byte to one character, so it is the last resort and every blob decodes.

What a Blob row keeps of a text blob (:func:`stored_text`): its characters, which a
text column can hold once each NUL is shown as U+FFFD (PostgreSQL's ``text`` holds no
NUL); and, only when those characters in UTF-8 are not the blob, the blob's own bytes
and the codec name. UTF-8 text, nearly every blob, is stored as it always was.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from charset_normalizer import from_bytes

GIT_BINARY_PROBE_BYTES = 8000
"""git's ``FIRST_FEW_BYTES``: how far ``buffer_is_binary`` looks for a NUL."""

UTF8 = "utf-8"
LAST_RESORT = "latin_1"

NUL_STAND_IN = "\ufffd"
"""What a text column shows for a NUL (U+FFFD REPLACEMENT CHARACTER)."""

WESTERN = ("cp1252", "latin_1", "iso8859_15")
"""Preferred when charset-normalizer finds one of them about as clean as its best
match (see :data:`NEAR_TIE_CHAOS`). On short Western text its measures barely tell the
Latin code pages apart (French in Latin-1 comes out as cp1257, German as HP Roman-8),
and the Western ones are by far the most common non-UTF-8 encodings in source trees;
text in Cyrillic, Greek, Central European or CJK encodings does not decode cleanly as
cp1252, so it is left to the library's best match."""

NEAR_TIE_CHAOS = 0.1
"""How much more "mess" (charset-normalizer's chaos ratio, 0 to 1) a Western decoding
may show than the best match and still be preferred."""


def is_binary(data: bytes) -> bool:
    """git's rule: a NUL byte within the first 8,000 bytes."""
    return data.find(b"\0", 0, GIT_BINARY_PROBE_BYTES) != -1


@dataclass(frozen=True)
class DecodedText:
    """A text blob's characters and the codec that gives its bytes back exactly."""

    text: str
    encoding: str
    """A Python codec name: ``text.encode(encoding)`` is the blob, byte for byte."""

    @property
    def is_utf8(self) -> bool:
        return self.encoding == UTF8


def decode_text(data: bytes) -> DecodedText:
    """Decode a blob git calls text: UTF-8 if it is valid UTF-8, else the declared or
    detected encoding whose decoding round-trips, else Latin-1."""
    try:
        return DecodedText(data.decode(UTF8), UTF8)
    except UnicodeDecodeError:
        pass
    for encoding in _candidate_encodings(data):
        decoded = _round_trip(data, encoding)
        if decoded is not None:
            return decoded
    return DecodedText(data.decode(LAST_RESORT), LAST_RESORT)


def _candidate_encodings(data: bytes) -> Iterator[str]:
    """charset-normalizer's matches, best first, after a Western one nearly as clean."""
    matches = list(from_bytes(data))
    if not matches:
        return
    best_chaos = min(m.chaos for m in matches)
    # A match stands for every encoding that decodes the sample to the same text.
    near = {
        encoding
        for m in matches
        if m.chaos <= best_chaos + NEAR_TIE_CHAOS
        for encoding in m.could_be_from_charset
    }
    yield from (encoding for encoding in WESTERN if encoding in near)
    yield from (m.encoding for m in matches)


def _round_trip(data: bytes, encoding: str) -> DecodedText | None:
    try:
        text = data.decode(encoding)
        exact = text.encode(encoding) == data
    except (UnicodeError, LookupError):
        return None
    return DecodedText(text, encoding) if exact else None


@dataclass(frozen=True)
class StoredText:
    """The columns of a text blob's row (``Blob.content``, ``content_bytes``, ``encoding``)."""

    content: str
    """The characters, each NUL shown as U+FFFD."""
    content_bytes: bytes | None
    """The blob itself when ``content`` in UTF-8 is not it; None otherwise."""
    encoding: str | None
    """The codec that decoded the blob; None for UTF-8."""


def stored_text(data: bytes, decoded: DecodedText) -> StoredText:
    """What to store of a text blob so that its bytes come back exactly."""
    content = decoded.text.replace("\0", NUL_STAND_IN)
    exact = decoded.is_utf8 and content == decoded.text
    return StoredText(
        content=content,
        content_bytes=None if exact else data,
        encoding=None if decoded.is_utf8 else decoded.encoding,
    )

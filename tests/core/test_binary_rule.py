"""Git's definition of binary (a NUL in the first 8,000 bytes) and exact decoding of
everything else, whatever its encoding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sync_jobs.core.content import GIT_BINARY_PROBE_BYTES, decode_text, is_binary
from sync_jobs.core.plan import BlobContent, ContentKind, classify_content, read_content

BIG = 1 << 20

JAPANESE = "日本語のテキストです。これはテストデータです。\n漢字、ひらがな、カタカナ。\n"
FRENCH = "# Café crème, naïve façade, déjà vu.\nprint('Où est la bibliothèque ?')\n"


def test_the_probe_is_gits_first_few_bytes() -> None:
    assert GIT_BINARY_PROBE_BYTES == 8000  # FIRST_FEW_BYTES in git's xdiff-interface.c


def test_a_nul_in_the_first_8000_bytes_is_binary_and_after_them_is_text() -> None:
    assert is_binary(b"\0")
    assert is_binary(b"a" * 7999 + b"\0")
    assert not is_binary(b"a" * 8000 + b"\0")
    assert not is_binary(b"")
    kind, text = classify_content(b"a" * 8000 + b"\0tail", max_bytes=BIG)
    assert kind is ContentKind.TEXT
    assert text is None  # a text column cannot hold the NUL
    content = read_content(b"a" * 8000 + b"\0tail", max_bytes=BIG)
    assert content.decoded is not None and content.decoded.text == "a" * 8000 + "\0tail"


def test_utf16_has_nul_bytes_so_git_calls_it_binary() -> None:
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
        assert read_content("hello\n".encode(encoding), max_bytes=BIG).kind is ContentKind.BINARY


def test_utf8_is_decoded_as_before() -> None:
    for text in ("", "plain\n", "café ✓ 日本\n", "\ufeffwith a byte-order mark\n"):
        content = read_content(text.encode("utf-8"), max_bytes=BIG)
        assert content == BlobContent(ContentKind.TEXT, decode_text(text.encode("utf-8")))
        assert content.column_text == text
        assert content.decoded is not None and content.decoded.is_utf8


def test_legacy_encodings_are_text_decoded_to_their_characters() -> None:
    cases = {
        "latin-1": FRENCH,
        "euc-jp": JAPANESE,
        "shift_jis": JAPANESE,
        "gb18030": "中文文本测试。这是一个例子。这是第二句话。\n",
    }
    for source_encoding, text in cases.items():
        data = text.encode(source_encoding)
        content = read_content(data, max_bytes=BIG)
        assert content.kind is ContentKind.TEXT, source_encoding
        assert content.column_text == text, source_encoding
        assert content.decoded is not None
        assert content.decoded.text.encode(content.decoded.encoding) == data


def test_an_executable_script_with_a_latin1_comment_is_text() -> None:
    data = "#!/bin/sh\n# Auteur : François Lefèvre\necho bonjour\n".encode("latin-1")
    assert classify_content(data, max_bytes=BIG) == (ContentKind.TEXT, data.decode("latin-1"))


def test_a_declared_encoding_wins() -> None:
    data = "# -*- coding: latin-1 -*-\nname = 'Zoë'\n".encode("latin-1")
    assert decode_text(data).encoding == "latin_1"
    assert decode_text(data).text == data.decode("latin-1")


def test_bytes_no_encoding_explains_still_decode_exactly() -> None:
    data = bytes(range(1, 256)) * 3
    decoded = decode_text(data)
    assert decoded.text.encode(decoded.encoding) == data


@given(st.binary(max_size=300))
def test_text_by_git_decodes_back_to_the_same_bytes(data: bytes) -> None:
    content = read_content(data, max_bytes=BIG)
    assert (content.kind is ContentKind.BINARY) == (b"\0" in data)
    if content.decoded is not None:
        assert content.decoded.text.encode(content.decoded.encoding) == data


@given(st.text(max_size=200))
def test_any_utf8_text_is_stored_exactly_as_before(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    kind, stored = classify_content(data, max_bytes=BIG)
    if "\0" in text:
        assert kind is ContentKind.BINARY and stored is None
    else:
        assert (kind, stored) == (ContentKind.TEXT, text)


@given(st.binary(min_size=1, max_size=64), st.integers(0, 9000))
def test_only_a_nul_within_the_probe_makes_a_blob_binary(tail: bytes, offset: int) -> None:
    data = b"x" * offset + b"\0" + tail
    assert is_binary(data) == (offset < GIT_BINARY_PROBE_BYTES)
    assert (read_content(data, max_bytes=BIG).kind is ContentKind.BINARY) == (offset < 8000)


def test_oversized_blobs_are_neither() -> None:
    assert read_content(b"x" * 11, max_bytes=10) == BlobContent(ContentKind.OVERSIZED)

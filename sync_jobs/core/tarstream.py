"""A streaming reader of gzip'd tar archives that hashes members as git blobs, over bytes.

GitHub's tarball is ``git archive`` output: ustar headers, pax extended headers for long
or non-ASCII names, one global pax header holding the commit SHA. ``tarfile`` reads it
too, but in stream mode it copies its whole decompression buffer on every 512-byte
header read and builds a TarInfo per member; for a first sync of 50,000 files that was
the largest single cost. This reader keeps one growing buffer with a read position,
hashes contents with hashlib directly, and holds at most one member's content (and
none beyond ``max_bytes``: larger members are hashed piece by piece), so memory stays
bounded whatever the archive's size.

Pure: chunks of bytes in, plain data out; the caller does the I/O.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from sync_jobs.errors import SyncDataError

BLOCK = 512


class TarEntry(NamedTuple):
    """A regular file or symlink of the archive, with its git blob SHA.

    ``data`` is the content (the link target for a symlink), or None for a regular
    file larger than ``max_bytes``.
    """

    name: str
    is_symlink: bool
    permissions: int
    size: int
    sha: str
    data: bytes | None


def gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress a gzip stream (several concatenated members included)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in chunks:
        while chunk:
            out = inflater.decompress(chunk)
            if out:
                yield out
            if inflater.eof:
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                chunk = b""
    tail = inflater.flush()
    if tail:
        yield tail


def git_blob_hash(size: int) -> hashlib._Hash:
    """A SHA-1 primed with git's blob header, ready for ``size`` bytes of content."""
    return hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)


class _Buffer:
    """Bytes from an iterator, read forward without re-copying what is left."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._data = bytearray()
        self._pos = 0

    def _fill(self, need: int) -> bool:
        while len(self._data) - self._pos < need:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            if self._pos > (1 << 20):
                del self._data[: self._pos]
                self._pos = 0
            self._data += chunk
        return True

    def read(self, size: int) -> bytes:
        if not self._fill(size):
            raise SyncDataError("the archive ends in the middle of a member")
        data = bytes(self._data[self._pos : self._pos + size])
        self._pos += size
        return data

    def pieces(self, size: int, piece: int = 1 << 20) -> Iterator[bytes]:
        while size > 0:
            data = self.read(min(size, piece))
            size -= len(data)
            yield data

    def skip(self, size: int) -> None:
        for _ in self.pieces(size):
            pass

    def at_end(self) -> bool:
        return not self._fill(1)


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(raw: bytes) -> int:
    if raw[:1] and raw[0] & 0x80:  # base-256, for sizes of 8 GiB and more
        return int.from_bytes(raw[1:], "big")
    digits = raw.split(b"\0", 1)[0].strip(b" ")
    return int(digits, 8) if digits else 0


def _pax(data: bytes) -> dict[str, str]:
    """``"%d key=value\\n"`` records; the length counts the whole record."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _padding(size: int) -> int:
    return -size % BLOCK


def read_entries(chunks: Iterable[bytes], *, max_bytes: int) -> Iterator[TarEntry]:
    """Regular files and symlinks of an uncompressed tar stream, in archive order."""
    buffer = _Buffer(chunks)
    pending: dict[str, str] = {}
    while not buffer.at_end():
        header = buffer.read(BLOCK)
        if header == bytes(BLOCK):
            break  # end-of-archive marker
        size = _number(header[124:136])
        kind = header[156:157]
        if kind in (b"x", b"g", b"L", b"K"):
            data = buffer.read(size)
            buffer.skip(_padding(size))
            if kind == b"x":
                pending.update(_pax(data))
            elif kind == b"L":
                pending["path"] = _text(data)
            elif kind == b"K":
                pending["linkpath"] = _text(data)
            continue  # a global header (git's commit SHA) describes no member
        name = _text(header[0:100])
        if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
            name = f"{_text(header[345:500])}/{name}"
        name = pending.get("path", name)
        size = int(pending.get("size", size))
        link = pending.get("linkpath", _text(header[157:257]))
        pending = {}
        permissions = _number(header[100:108])
        if kind == b"2":
            data = link.encode("utf-8", "surrogateescape")
            sha = git_blob_hash(len(data))
            sha.update(data)
            yield TarEntry(name, True, permissions, len(data), sha.hexdigest(), data)
            buffer.skip(size + _padding(size))
        elif kind in (b"0", b"\0", b"7"):
            sha = git_blob_hash(size)
            content: bytes | None = None
            if size <= max_bytes:
                content = buffer.read(size)
                sha.update(content)
            else:
                for piece in buffer.pieces(size):
                    sha.update(piece)
            buffer.skip(_padding(size))
            yield TarEntry(name, False, permissions, size, sha.hexdigest(), content)
        else:  # directories, hard links, devices: nothing a git tree holds as a blob
            buffer.skip(size + _padding(size))

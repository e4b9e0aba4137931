"""The streaming tar reader against tarfile and git itself: same members, same blob SHAs."""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from sync_jobs.core.tarstream import gunzip, read_entries
from sync_jobs.core.tree import blob_sha
from sync_jobs.errors import SyncDataError

NAMES = [
    "a.txt",
    "dir/sub/file.md",
    "ünïcødé dir/naïve name.md",
    "深い/ファイル.txt",
    "long/" + "x" * 120 + "/" + "y" * 110 + ".txt",
    "with space/read me",
]


def build(fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for number, name in enumerate(NAMES):
            data = (name * (number * 40 + 1)).encode()
            info = tarfile.TarInfo(f"top/{name}")
            info.size, info.mode = len(data), 0o755 if number % 2 else 0o644
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("top/link-" + "z" * 120)
        link.type, link.linkname = tarfile.SYMTYPE, "a.txt/" + "é" * 80
        tar.addfile(link)
        folder = tarfile.TarInfo("top/dir")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    return out.getvalue()


def expected(archive: bytes) -> list[tuple[str, bool, int, str]]:
    rows = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        for member in tar:
            if member.issym():
                data = member.linkname.encode("utf-8", "surrogateescape")
                rows.append((member.name, True, len(data), blob_sha(data)))
            elif member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                data = handle.read()
                rows.append((member.name, False, member.mode, blob_sha(data)))
    return rows


def entries(archive: bytes, *, max_bytes: int = 10**6, chunk: int = 777) -> list:
    compressed = gzip.compress(archive)
    chunks = (compressed[i : i + chunk] for i in range(0, len(compressed), chunk))
    return list(read_entries(gunzip(chunks), max_bytes=max_bytes))


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_members_and_shas_match_tarfile(fmt: int) -> None:
    archive = build(fmt)
    got = [
        (e.name, e.is_symlink, e.size if e.is_symlink else e.permissions, e.sha)
        for e in entries(archive)
    ]
    assert got == expected(archive)


def test_large_members_are_hashed_without_keeping_content() -> None:
    archive = build(tarfile.PAX_FORMAT)
    small = entries(archive, max_bytes=10**6)
    capped = entries(archive, max_bytes=100, chunk=64)
    assert [e.sha for e in capped] == [e.sha for e in small]
    for entry in capped:
        if entry.is_symlink or entry.size <= 100:
            assert entry.data is not None and blob_sha(entry.data) == entry.sha
        else:
            assert entry.data is None


def test_git_archive_matches_git_hashes(tmp_path: Path) -> None:
    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], capture_output=True, check=True
        ).stdout

    git("init", "-q")
    for name in NAMES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode() * 3)
    (tmp_path / "tool.sh").write_text("#!/bin/sh\n")
    (tmp_path / "tool.sh").chmod(0o755)
    (tmp_path / "link").symlink_to("a.txt")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    archive = git("archive", "--format=tar", "--prefix=o-r-1/", "HEAD")
    listing = git("ls-tree", "-r", "-z", "HEAD").decode().split("\0")
    want = {}
    for line in filter(None, listing):
        meta, path = line.split("\t", 1)
        want["o-r-1/" + path] = meta.split()[2]
    got = {e.name: e.sha for e in entries(archive)}
    assert got == want


def test_a_cut_archive_is_an_error() -> None:
    archive = build(tarfile.PAX_FORMAT)
    with pytest.raises(SyncDataError):
        list(read_entries([archive[:1500]], max_bytes=10**6))

"""Text in any encoding is text, as git says: synced through the real pipeline on the
emulator (a first sync from the tarball, then a delta by blob calls), checked against
``git diff --numstat``, every text blob's bytes read back exactly, and shown decoded,
with its encoding, by the API."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from github_emulator.server import EmulatorServer
from models import ProjectSync, SyncStatus, db
from sync_jobs.pipeline import execute_sync
from tests.sync.conftest import (
    Tracked,
    assert_matches_git,
    git_binary_paths,
    git_blob,
    git_tree,
    track,
)

FRENCH = "Café crème, naïve façade, déjà vu.\nOù est la bibliothèque ?\n"
JAPANESE = "日本語のテキストです。これはテストデータです。\n漢字、ひらがな、カタカナ。\n"
SCRIPT = "#!/bin/sh\n# Auteur : François Lefèvre, année 1998\necho bonjour\n"
PLAIN_TEXT = "UTF-8 stays as it was: café ✓\n"
PLAIN = "plain.md"

TEXTS = {
    "docs/LISEZMOI.txt": ("100644", FRENCH, "latin-1"),
    "testdata/euc-jp.txt": ("100644", JAPANESE, "euc-jp"),
    "testdata/shift_jis.txt": ("100644", JAPANESE, "shift_jis"),
    "bin/install.sh": ("100755", SCRIPT, "latin-1"),
    PLAIN: ("100644", PLAIN_TEXT, "utf-8"),
}
LATIN_LINE = "ligne {n} : été\n"
JAPANESE_LINE = "追加の行 {n}。\n"
JAPANESE_ENCODINGS = ("euc-jp", "shift_jis")
UTF16 = "testdata/utf-16.txt"
EARLY_NUL = "data/early-nul.bin"
LATE_NUL = "data/late-nul.txt"


def files(version: int) -> dict[str, tuple[str, bytes]]:
    """The repository's files; each version adds lines to every one of them."""
    tree = {
        path: (mode, text.encode(TEXTS[path][2])) for path, (mode, text) in texts(version).items()
    }
    extra = added_lines(LATIN_LINE, version)
    tree[UTF16] = ("100644", (FRENCH + extra).encode("utf-16"))
    tree[EARLY_NUL] = ("100644", b"a" * 7999 + b"\0" + extra.encode())
    tree[LATE_NUL] = ("100644", b"a" * 8000 + b"\0 tail\n" + extra.encode())
    return tree


def added_lines(template: str, version: int) -> str:
    return "".join(template.format(n=n) for n in range(version))


def texts(version: int) -> dict[str, tuple[str, str]]:
    """Path -> (mode, characters) of the text files at a version."""
    return {
        path: (
            mode,
            text + added_lines(JAPANESE_LINE if enc in JAPANESE_ENCODINGS else LATIN_LINE, version),
        )
        for path, (mode, text, enc) in TEXTS.items()
    }


def commit_and_push(tracked: Tracked, version: int) -> str:
    tracked.history._commit(f"Version {version}", dict(files(version)), parent=tracked.history.head)
    return tracked.push()


def run(tracked: Tracked) -> ProjectSync:
    sync_id = tracked.new_sync()
    execute_sync(sync_id)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    return sync


def shown_memory(client: FlaskClient, project_id: int) -> dict[str, tuple[str, str]]:
    """Path -> (text, encoding) of the active memory, as the API shows it."""
    answer = client.get(f"/api/v1/projects/{project_id}/memory?content=1&per_page=100")
    body = answer.get_json()
    assert answer.status_code == 200 and body is not None, answer.data
    return {item["path"]: (item["content"], item["encoding"]) for item in body["items"]}


def expected_memory(version: int) -> dict[str, str]:
    """Every text file has memory, the one whose NUL comes after 8,000 bytes included."""
    memory = {path: text for path, (_mode, text) in texts(version).items()}
    memory[LATE_NUL] = files(version)[LATE_NUL][1].decode("utf-8")
    return memory


def assert_shown_exactly(tracked: Tracked, client: FlaskClient, head: str, version: int) -> None:
    """The API shows each file's characters, and an encoding that gives git's bytes back."""
    shown = shown_memory(client, tracked.project_id)
    assert {path: text for path, (text, _encoding) in shown.items()} == expected_memory(version)
    blobs = git_tree(tracked.git_dir, head)
    for path, (text, encoding) in shown.items():
        assert text.encode(encoding) == git_blob(tracked.git_dir, blobs[path][1]), path
        assert (encoding == "utf-8") == (path in (PLAIN, LATE_NUL)), (path, encoding)


def test_text_in_any_encoding_is_stored_shown_and_in_memory(
    app_context: object, client: FlaskClient, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    tracked = track(github_emulator, tmp_path / "work", name="encodings", files=0)
    head = commit_and_push(tracked, 0)
    # git itself: UTF-16 and the early NUL are binary, everything else is text.
    assert git_binary_paths(tracked.git_dir, head) == {UTF16, EARLY_NUL}

    first = run(tracked)
    assert first.mode is not None and "tarball" in first.mode, first.mode
    assert_matches_git(tracked, head)
    assert_shown_exactly(tracked, client, head, 0)

    head = commit_and_push(tracked, 2)
    second = run(tracked)
    assert second.mode == "delta+blobs", second.mode
    assert_matches_git(tracked, head)
    assert_shown_exactly(tracked, client, head, 2)

"""Text blobs come back from the database byte for byte, and blobs stored under the
old rule (non-UTF-8 text marked binary, text with a late NUL stored without content)
get their content and memory after the migration and a full sync.

The database here is built by the migrations (not ``create_all``), so the test walks
the schema down to the revision before the bytes columns and back up, with data in it,
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, select, text

from github_emulator.server import EmulatorServer
from models import Blob, MemoryEntry, ProjectSync, SyncStatus, db
from models.queries import memory_entries
from sync_jobs.core.content import decode_text, stored_text
from sync_jobs.pipeline import execute_sync
from tests.conftest import base_settings, reset_redis
from tests.sync.conftest import Tracked, assert_matches_git, git_tree, track
from webhook_app import create_app

BEFORE_BYTES = "e50182ab1326"
"""The revision before ``blob.content_bytes`` and ``blob.encoding``."""

FRENCH = "Café crème, naïve façade, déjà vu.\n"
JAPANESE = "日本語のテキストです。これはテストデータです。\n"

OLD_RULE_BINARY = {
    "docs/LISEZMOI.txt": FRENCH.encode("latin-1"),
    "testdata/euc-jp.txt": JAPANESE.encode("euc-jp"),
    "testdata/shift_jis.txt": JAPANESE.encode("shift_jis"),
}
"""Text in another encoding, which the old rule called binary."""
LATE_NUL = {
    "data/late-nul.txt": b"a" * 8000 + b"\0 tail\n",
    # Every byte value after the probe: BYTEA must carry backslashes, NULs and all.
    "data/every-byte.dat": b"a" * 8000 + bytes(range(256)),
}
"""Text to git (the first NUL after 8,000 bytes), stored without content before."""
UNCHANGED = {"README.md": "UTF-8 stays as it was: café ✓\n".encode()}
BINARY = {"logo.bin": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"}


@pytest.fixture
def app(
    empty_database_url: str, redis_url: str, tmp_path: Path, github_emulator: EmulatorServer
) -> Iterator[Flask]:
    """An app whose schema the migrations built, on either backend."""
    settings = base_settings(empty_database_url, redis_url, str(tmp_path))
    settings.update(
        GITHUB_API_URL=github_emulator.url,
        APP_ID=github_emulator.app_id,
        PRIVATE_KEY=github_emulator.private_key_pem,
        SYNC_MAX_BLOB_BYTES=64 * 1024,
    )
    reset_redis(redis_url)
    application = create_app(settings)
    with application.app_context():
        flask_migrate.upgrade()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    reset_redis(redis_url)


def run(tracked: Tracked, *, full: bool = False) -> ProjectSync:
    sync_id = tracked.new_sync()
    execute_sync(sync_id, full=full)
    sync = db.session.get_one(ProjectSync, sync_id)
    assert sync.status is SyncStatus.SUCCEEDED, sync.error
    return sync


def blob_columns() -> set[str]:
    return {column["name"] for column in inspect(db.engine).get_columns("blob")}


def shas_of(tracked: Tracked, head: str, paths: dict[str, bytes]) -> list[str]:
    tree = git_tree(tracked.git_dir, head)
    return [tree[path][1] for path in paths]


def store_as_the_old_rule_did(tracked: Tracked, head: str) -> None:
    """Walk the schema down and leave the rows the old rule wrote: no content, no memory."""
    db.session.remove()
    flask_migrate.downgrade(revision=BEFORE_BYTES)
    assert "content_bytes" not in blob_columns() and "encoding" not in blob_columns()
    binary = shas_of(tracked, head, OLD_RULE_BINARY)
    late = shas_of(tracked, head, LATE_NUL)
    with db.engine.begin() as connection:
        params = {"repository_id": tracked.repository_id}
        for shas, is_binary in ((binary, True), (late, False)):
            names = ", ".join(f"'{sha}'" for sha in shas)
            where = f"repository_id = :repository_id AND sha IN ({names})"
            connection.execute(
                text(
                    f"DELETE FROM memory_entry WHERE blob_id IN (SELECT id FROM blob WHERE {where})"
                ),
                params,
            )
            connection.execute(
                text(f"UPDATE blob SET content = NULL, is_binary = :binary WHERE {where}"),
                {**params, "binary": is_binary},
            )
    db.engine.dispose()


def blob_calls(tracked: Tracked) -> int:
    counts = tracked.server.request_counts().by_endpoint
    return sum(n for endpoint, n in counts.items() if "/git/blobs/" in endpoint)


def test_old_rule_blobs_get_content_and_memory_after_the_migration_and_a_full_sync(
    app_context: Flask, client: FlaskClient, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    tracked = track(github_emulator, tmp_path / "work", name="backfill", files=0)
    everything = {**OLD_RULE_BINARY, **LATE_NUL, **UNCHANGED, **BINARY}
    tracked.history._commit("Texts", {p: ("100644", b) for p, b in everything.items()}, parent=None)
    head = tracked.push()
    run(tracked)
    assert_matches_git(tracked, head)
    kept = db.session.scalars(select(Blob).where(Blob.sha.in_(shas_of(tracked, head, UNCHANGED))))
    kept_ids = {blob.id for blob in kept}
    db.session.rollback()

    store_as_the_old_rule_did(tracked, head)
    flask_migrate.upgrade()
    assert {"content_bytes", "encoding"} <= blob_columns()
    stored = {b.sha: b for b in db.session.scalars(select(Blob))}
    forgotten = shas_of(tracked, head, {**OLD_RULE_BINARY, **LATE_NUL, **BINARY})
    assert not set(forgotten) & set(stored), "blobs without content are deleted"
    # UTF-8 text is untouched, row and memory entry alike.
    assert {b.id for b in stored.values()} == kept_ids
    assert all(b.content_bytes is None and b.encoding is None for b in stored.values())
    memory = {e.path for e in db.session.scalars(memory_entries(tracked.project_id))}
    assert memory == set(UNCHANGED)

    calls_before = blob_calls(tracked)
    full = run(tracked, full=True)
    assert full.mode == "full+blobs", full.mode
    assert blob_calls(tracked) - calls_before == len(forgotten)  # only those, once each
    assert_matches_git(tracked, head)
    memory = {e.path for e in db.session.scalars(memory_entries(tracked.project_id))}
    assert memory == set(OLD_RULE_BINARY) | set(LATE_NUL) | set(UNCHANGED)
    # The full sync added memory for paths it did not change: no file version moved.
    assert (full.files_added, full.files_modified, full.files_removed) == (0, 0, 0)

    answer = client.get(f"/api/v1/projects/{tracked.project_id}/memory?content=1&per_page=50")
    assert answer.status_code == 200, answer.data
    shown = {item["path"]: item for item in answer.get_json()["items"]}
    for path, data in {**OLD_RULE_BINARY, **LATE_NUL, **UNCHANGED}.items():
        assert shown[path]["content"].encode(shown[path]["encoding"]) == data, path
    assert shown["docs/LISEZMOI.txt"]["content"] == FRENCH
    assert shown["testdata/euc-jp.txt"]["content"] == JAPANESE
    assert shown["data/late-nul.txt"]["content"] == "a" * 8000 + "\0 tail\n"
    assert shown["README.md"]["encoding"] == "utf-8"

    # And a delta sync afterwards changes nothing: the state is the head's.
    again = run(tracked)
    assert again.mode == "noop"
    assert_matches_git(tracked, head)


def test_a_second_full_sync_fetches_nothing_and_keeps_memory(
    app_context: Flask, github_emulator: EmulatorServer, tmp_path: Path
) -> None:
    tracked = track(github_emulator, tmp_path / "work", name="twice", files=0)
    everything = {**OLD_RULE_BINARY, **LATE_NUL, **UNCHANGED, **BINARY}
    tracked.history._commit("Texts", {p: ("100644", b) for p, b in everything.items()}, parent=None)
    head = tracked.push()
    run(tracked)
    entries = {e.id for e in db.session.scalars(select(MemoryEntry))}
    calls_before = blob_calls(tracked)
    run(tracked, full=True)
    assert blob_calls(tracked) == calls_before
    assert {e.id for e in db.session.scalars(select(MemoryEntry))} == entries
    assert_matches_git(tracked, head)


@pytest.mark.parametrize(
    ("data", "content_bytes", "encoding"),
    [
        ("plain café\n".encode(), False, None),
        (FRENCH.encode("latin-1"), True, "cp1252"),
        (JAPANESE.encode("euc-jp"), True, "euc_jis_2004"),
        (b"a" * 8000 + b"\0 tail\n", True, None),
    ],
)
def test_stored_text_keeps_bytes_only_when_utf8_text_is_not_them(
    data: bytes, content_bytes: bool, encoding: str | None
) -> None:
    stored = stored_text(data, decode_text(data))
    assert "\0" not in stored.content
    assert stored.content_bytes == (data if content_bytes else None)
    assert stored.encoding == encoding
    exact = stored.content_bytes or stored.content.encode("utf-8")
    assert exact == data

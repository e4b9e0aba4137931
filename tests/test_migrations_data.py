"""Migrations keep the data they find: rows written at the revision before one, upgraded
and downgraded, all still there, each as it was (but for what the revision changes).

On SQLite a revision that adds or drops a constraint rebuilds its table; with foreign
keys on, dropping the old table would delete every row that references it with ON
DELETE CASCADE. These tests fill every table, so such a loss shows as a missing row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import flask_migrate
import pytest
from flask import Flask
from sqlalchemy import MetaData, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from models import db
from webhook_app import create_app

from .conftest import base_settings

BEFORE_SYNC_MODE = "fec9bb8cb9f2"
SYNC_MODE = "9b7945b7ba03"
STOP_KIND = "d69c3232a68c"

T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)

Snapshot = dict[str, list[dict[str, Any]]]


@pytest.fixture
def migrating_app(empty_database_url: str, redis_url: str, tmp_path: Any) -> Iterator[Flask]:
    app = create_app(base_settings(empty_database_url, redis_url, str(tmp_path)))
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _sync(id_: int, **fields: Any) -> dict[str, Any]:
    row = {
        "id": id_,
        "project_id": 1,
        "trigger": "push",
        "status": "succeeded",
        "delivery_id": f"delivery-{id_}",
        "rq_job_id": f"sync-{id_}",
        "sequence": None,
        "previous_sync_id": None,
        "restored_from_sync_id": None,
        "base_commit_sha": None,
        "head_commit_sha": f"{id_:040x}",
        "head_tree_sha": f"{id_ + 100:040x}",
        "files_added": 0,
        "files_modified": 0,
        "files_removed": 0,
        "files_unchanged": 0,
        "api_calls": 3,
        "bytes_fetched": 1200,
        "queued_at": _at(id_),
        "started_at": _at(id_),
        "finished_at": _at(id_ + 1),
        "error": None,
        "mode": None,
        "full_sync_reason": None,
        "phase_seconds": {"resolve": 0.1, "diff": 0.2},
        "attempts": 1,
        "retry_at": None,
        "waiting_reason": None,
        "full_requested": False,
    }
    return {**row, **fields}


def insert_data(connection: Connection, tables: MetaData) -> None:
    """One installation with two repositories, a project with a lineage of two syncs
    (and failed ones beside it), its files, blobs, trees and memory entries, plus a
    stopped project, a sync request, a delivery and the maintenance rows."""
    t = tables.tables
    connection.execute(t["installation"].insert(), [{
        "id": 1, "github_id": 9_100_000_001, "account_login": "octo-org",
        "account_id": 9_200_000_001, "account_type": "Organization",
        "permissions": {"contents": "read", "metadata": "read"},
        "suspended_at": None, "deleted_at": None, "created_at": _at(0), "updated_at": _at(0),
    }])
    connection.execute(t["repository"].insert(), [
        {"id": 1, "github_id": 9_300_000_001, "installation_id": 1,
         "full_name": "octo-org/widgets", "default_branch": "main", "private": True,
         "removed_at": None, "created_at": _at(0), "updated_at": _at(0)},
        {"id": 2, "github_id": 9_300_000_002, "installation_id": 1,
         "full_name": "octo-org/gadgets", "default_branch": "main", "private": False,
         "removed_at": _at(50), "created_at": _at(0), "updated_at": _at(50)},
    ])
    project = {
        "auto_sync": True, "current_sync_id": None, "branch_etag": None, "reconciled_at": None,
        "tracked": True, "untracked_at": None, "branch_head_sha": None,
        "branch_head_seen_at": None, "created_at": _at(0), "updated_at": _at(0),
    }
    connection.execute(t["project"].insert(), [
        {**project, "id": 1, "repository_id": 1, "branch": "main", "stopped_reason": None,
         "branch_etag": 'W/"abc"', "branch_head_sha": f"{2:040x}",
         "branch_head_seen_at": _at(10)},
        {**project, "id": 2, "repository_id": 2, "branch": "main",
         "stopped_reason": "the repository was removed from the installation"},
    ])
    connection.execute(t["project_sync"].insert(), [
        _sync(1, trigger="install", sequence=1, mode="full+tarball", files_added=2,
              full_sync_reason="the first sync of the project"),
        _sync(2, sequence=2, previous_sync_id=1, base_commit_sha=f"{1:040x}",
              mode="delta+blobs", files_modified=1, files_unchanged=1),
        # Legacy modes no SyncMode names: one the migration can place, one it cannot.
        _sync(3, status="failed", mode="delta+zip", error="GitHub answered 502"),
        _sync(4, status="failed", mode="sideways", full_requested=True),
        _sync(5, project_id=2, trigger="manual", status="superseded", started_at=None,
              finished_at=None, head_commit_sha=None, head_tree_sha=None, attempts=0),
    ])
    connection.execute(
        t["project"].update().where(t["project"].c.id == 1).values(current_sync_id=2)
    )
    connection.execute(t["sync_request"].insert(), [{
        "id": 1, "project_id": 1, "key": "key-1", "kind": "sync", "parameters": "{}",
        "sync_id": 2, "created_at": _at(5),
    }])
    connection.execute(t["blob"].insert(), [
        {"id": 1, "repository_id": 1, "sha": "a" * 40, "size": 6, "is_binary": False,
         "content": "hello\n", "content_bytes": None, "encoding": None, "created_at": _at(1)},
        {"id": 2, "repository_id": 1, "sha": "b" * 40, "size": 5, "is_binary": False,
         "content": "caf\u00e9", "content_bytes": b"caf\xe9", "encoding": "latin_1",
         "created_at": _at(1)},
        {"id": 3, "repository_id": 1, "sha": "c" * 40, "size": 7, "is_binary": False,
         "content": "hello!\n", "content_bytes": None, "encoding": None, "created_at": _at(3)},
    ])
    connection.execute(t["git_tree"].insert(), [
        {"id": 1, "repository_id": 1, "sha": f"{101:040x}",
         "entries": [["README", "100644", "blob", "a" * 40, 6]]},
        {"id": 2, "repository_id": 1, "sha": f"{102:040x}",
         "entries": [["README", "100644", "blob", "c" * 40, 7]]},
    ])
    connection.execute(t["repository_file"].insert(), [
        {"id": 1, "project_id": 1, "path": "README", "mode": "100644", "sha": "a" * 40,
         "size": 6, "valid_from_sync_id": 1, "valid_to_sync_id": 2},
        {"id": 2, "project_id": 1, "path": "notes/caf\u00e9.txt", "mode": "100644",
         "sha": "b" * 40, "size": 5, "valid_from_sync_id": 1, "valid_to_sync_id": None},
        {"id": 3, "project_id": 1, "path": "README", "mode": "100644", "sha": "c" * 40,
         "size": 7, "valid_from_sync_id": 2, "valid_to_sync_id": None},
    ])
    connection.execute(t["memory_entry"].insert(), [
        {"id": 1, "project_id": 1, "path": "README", "blob_id": 1, "created_in_sync_id": 1,
         "superseded_in_sync_id": 2, "superseded_by_entry_id": None,
         "restored_from_entry_id": None},
        {"id": 2, "project_id": 1, "path": "notes/caf\u00e9.txt", "blob_id": 2,
         "created_in_sync_id": 1, "superseded_in_sync_id": None,
         "superseded_by_entry_id": None, "restored_from_entry_id": None},
        {"id": 3, "project_id": 1, "path": "README", "blob_id": 3, "created_in_sync_id": 2,
         "superseded_in_sync_id": None, "superseded_by_entry_id": None,
         "restored_from_entry_id": None},
    ])
    connection.execute(
        t["memory_entry"].update().where(t["memory_entry"].c.id == 1)
        .values(superseded_by_entry_id=3)
    )
    connection.execute(t["webhook_delivery"].insert(), [{
        "id": 1, "delivery_id": "delivery-2", "event": "push", "action": None,
        "hook_id": 42, "installation_github_id": 9_100_000_001,
        "repository_github_id": 9_300_000_001, "payload": '{"ref": "refs/heads/main"}',
        "status": "processed", "status_reason": "sync 2 of project 1 requested",
        "attempts": 1, "received_at": _at(4), "processed_at": _at(4), "form_encoded": False,
    }])
    connection.execute(t["maintenance_checkpoint"].insert(), [
        {"name": "redelivery", "value": {"since": "2026-11-20T09:00:00+00:00"},
         "updated_at": _at(6)},
    ])
    connection.execute(t["redelivery_request"].insert(), [
        {"guid": "guid-1", "hook_delivery_id": 77, "event": "push", "requested_at": _at(7),
         "outcome": None},
    ])


def reflected() -> MetaData:
    tables = MetaData()
    tables.reflect(db.engine)
    return tables


def snapshot(*, leave_out: tuple[str, ...] = ()) -> Snapshot:
    """Every row of every table, ordered by primary key; ``leave_out`` names
    ``table.column``s a revision adds."""
    tables = reflected()
    rows: Snapshot = {}
    with db.engine.connect() as connection:
        for name, table in sorted(tables.tables.items()):
            if name == "alembic_version":
                continue
            order = list(table.primary_key.columns)
            rows[name] = [
                {k: v for k, v in row._asdict().items() if f"{name}.{k}" not in leave_out}
                for row in connection.execute(select(table).order_by(*order))
            ]
    return rows


def with_modes(rows: Snapshot, modes: dict[int, str | None]) -> Snapshot:
    changed = {**rows, "project_sync": [dict(row) for row in rows["project_sync"]]}
    for row in changed["project_sync"]:
        if row["id"] in modes:
            row["mode"] = modes[row["id"]]
    return changed


def refused(statement: str) -> bool:
    """Whether the database refuses ``statement`` (always rolled back)."""
    with db.engine.connect() as connection:
        try:
            connection.execute(text(statement))
        except IntegrityError:
            return True
        finally:
            connection.rollback()
    return False


def assert_sqlite_foreign_keys_on() -> None:
    """The pooled connection a migration used enforces foreign keys again."""
    if db.engine.dialect.name != "sqlite":
        return
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []


def test_sync_mode_constraint_keeps_every_row(migrating_app: Flask) -> None:
    flask_migrate.upgrade(revision=BEFORE_SYNC_MODE)
    with db.engine.begin() as connection:
        insert_data(connection, reflected())
    before = snapshot()
    assert {name for name, rows in before.items() if not rows} == set(), "a table is empty"

    flask_migrate.upgrade(revision=SYNC_MODE)
    # Unknown legacy modes: "delta+zip" keeps what it compared, "sideways" is unknown.
    normalised = with_modes(before, {3: "delta", 4: None})
    assert snapshot() == normalised
    assert refused("UPDATE project_sync SET mode = 'sideways' WHERE id = 1")
    assert refused("UPDATE project_sync SET mode = 'DELTA' WHERE id = 1")
    assert not refused("UPDATE project_sync SET mode = 'full+git+blobs' WHERE id = 1")
    assert_sqlite_foreign_keys_on()

    flask_migrate.downgrade(revision=BEFORE_SYNC_MODE)
    assert snapshot() == normalised
    assert not refused("UPDATE project_sync SET mode = 'sideways' WHERE id = 1")
    assert_sqlite_foreign_keys_on()


# Stopped projects as each cause worded its reason, and the kind each must get.
STOPS = {
    3: ("release", "the branch release was deleted on GitHub", "branch_deleted"),
    # The wording of a branch deletion, but of another branch: never undone by a push.
    4: ("topic", "the branch main was deleted on GitHub", "other"),
    5: ("uninstalled", "the App was uninstalled from octo-org", "app_uninstalled"),
    6: ("deleted", "the repository octo-org/widgets was deleted on GitHub",
        "repository_deleted"),
    7: ("moved", "transferred to new-owner/widgets; not synced until the App is installed "
        "on it there", "repository_transferred"),
    8: ("by-hand", "paused by hand", "other"),
}


def insert_stopped_projects(connection: Connection, tables: MetaData) -> None:
    project = tables.tables["project"]
    connection.execute(project.insert(), [
        {"id": id_, "repository_id": 1, "branch": branch, "stopped_reason": reason,
         "auto_sync": True, "tracked": True, "created_at": _at(0), "updated_at": _at(0)}
        for id_, (branch, reason, _kind) in STOPS.items()
    ])


def stop_kinds() -> dict[int, str | None]:
    with db.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, stop_kind FROM project"))
        return {id_: kind for id_, kind in rows}


def test_stop_kind_backfill_keeps_every_row(migrating_app: Flask) -> None:
    flask_migrate.upgrade(revision=BEFORE_SYNC_MODE)
    with db.engine.begin() as connection:
        insert_data(connection, reflected())
    flask_migrate.upgrade(revision=SYNC_MODE)
    with db.engine.begin() as connection:
        insert_stopped_projects(connection, reflected())
    before = snapshot()

    flask_migrate.upgrade(revision=STOP_KIND)
    assert snapshot(leave_out=("project.stop_kind",)) == before
    assert stop_kinds() == {
        1: None,
        2: "repository_removed",
        **{id_: kind for id_, (_branch, _reason, kind) in STOPS.items()},
    }
    assert refused("UPDATE project SET stop_kind = 'bored' WHERE id = 1")
    assert not refused("UPDATE project SET stop_kind = 'branch_deleted' WHERE id = 1")
    assert_sqlite_foreign_keys_on()

    flask_migrate.downgrade(revision=SYNC_MODE)
    assert snapshot() == before
    assert_sqlite_foreign_keys_on()


def test_every_row_survives_both_revisions_and_back(migrating_app: Flask) -> None:
    flask_migrate.upgrade(revision=BEFORE_SYNC_MODE)
    with db.engine.begin() as connection:
        insert_data(connection, reflected())
    normalised = with_modes(snapshot(), {3: "delta", 4: None})

    flask_migrate.upgrade()
    new_columns = ("project.stop_kind", "project_sync.pushed_before", "project_sync.pushed_after")
    assert snapshot(leave_out=new_columns) == normalised
    assert stop_kinds() == {1: None, 2: "repository_removed"}
    assert_sqlite_foreign_keys_on()

    flask_migrate.downgrade(revision=BEFORE_SYNC_MODE)
    assert snapshot() == normalised
    assert_sqlite_foreign_keys_on()

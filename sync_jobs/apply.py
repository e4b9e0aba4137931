"""Apply phase: one transaction that moves a project from its current state to a new one.

In that transaction, in this order:

1. the project's current-sync pointer moves from the sync the delta was computed
   against to this sync, by compare-and-set (``UPDATE ... WHERE current_sync_id IS NOT
   DISTINCT FROM :expected``). Zero rows means another sync won: nothing is written and
   :class:`LostRaceError` makes the pipeline recompute against the new state. Taking
   the project row first also serialises concurrent applies on PostgreSQL;
2. the sync joins the lineage (``previous_sync_id`` = the expected sync, which is
   unique, and ``sequence`` = its sequence + 1), status succeeded;
3. old RepositoryFile versions of changed paths are closed and new ones opened;
4. memory entries of changed text files are superseded and new ones created (in a
   full sync, also for every text file of the head that has none).

A worker killed before the commit leaves none of it; the retried sync starts again
from the same current state. Content-addressed rows (Blob, GitTree) are not part of
it: they are written as fetched (see :mod:`sync_jobs.fetch`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from models import Blob, GitTree, MemoryEntry, Project, ProjectSync, RepositoryFile, db
from models.base import utcnow
from models.enums import SyncStatus
from models.queries import file_rows_at
from sync_jobs import defaults
from sync_jobs.core.diff import ChangeKind, Delta
from sync_jobs.core.tree import EntryKind, FileEntry, FlatTree, TreeItem
from sync_jobs.errors import LostRaceError


def _chunks(items: Sequence[Any], size: int = defaults.DB_BATCH_ROWS) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table_of(model: Any) -> Table:
    """The Core table of a model, for bulk statements (executemany)."""
    table: Table = model.__table__
    return table


def insert_ignoring_conflicts(
    table: Table | Any, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    """Bulk insert content-addressed rows; a row another worker stored first is skipped."""
    if not rows:
        return
    statement: Any
    if db.session.get_bind().dialect.name == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    else:
        statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    for batch in _chunks(rows):
        db.session.execute(statement, list(batch))


def bulk_insert(table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many new rows in the current transaction; COPY on PostgreSQL.

    COPY is several times faster than executemany for the tens of thousands of rows of a
    first sync, and it runs on the session's own connection, so it commits or rolls back
    with the rest of the apply.
    """
    if not rows:
        return
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        for batch in _chunks(rows):
            connection.execute(insert(table), list(batch))
        return
    columns = list(rows[0])
    raw = connection.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    with (
        raw.cursor() as cursor,  # type: ignore[union-attr]
        cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy,
    ):
        for row in rows:
            copy.write_row([row[c] for c in columns])


def copy_ignoring_conflicts(
    table: Table,
    rows: list[dict[str, Any]],
    keys: Sequence[str],
    *,
    connection: Connection | None = None,
) -> None:
    """:func:`insert_ignoring_conflicts` through COPY into a temporary table (PostgreSQL).

    ``connection`` is for callers writing outside the session (a writer thread); the
    caller commits it.
    """
    if connection is not None:
        _copy_ignoring_conflicts(connection, table, rows, keys)
        return
    connection = db.session.connection()
    if not rows or connection.dialect.name != "postgresql":
        insert_ignoring_conflicts(table, rows, keys)
        return
    _copy_ignoring_conflicts(connection, table, rows, keys)


def _copy_ignoring_conflicts(
    connection: Connection, table: Table, rows: list[dict[str, Any]], keys: Sequence[str]
) -> None:
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    staging = f"incoming_{table.name}"
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS "{staging}" '
            f'(LIKE "{table.name}" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
        )
        with cursor.copy(f'COPY "{staging}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        conflict = ", ".join(f'"{k}"' for k in keys)
        cursor.execute(
            f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM "{staging}" '
            f"ON CONFLICT ({conflict}) DO NOTHING"
        )
        cursor.execute(f'TRUNCATE "{staging}"')


def stored_trees(repository_id: int, shas: Iterable[str]) -> dict[str, list[TreeItem]]:
    """Tree objects already stored for the repository, by SHA."""
    found: dict[str, list[TreeItem]] = {}
    for batch in _chunks(sorted(set(shas)), defaults.TREE_LOOKUP_BATCH):
        rows = db.session.execute(
            select(GitTree.sha, GitTree.entries).where(
                GitTree.repository_id == repository_id, GitTree.sha.in_(batch)
            )
        )
        for sha, entries in rows:
            found[sha] = [_tree_item(entry) for entry in entries]
    return found


def _tree_item(stored: list[Any]) -> TreeItem:
    """A GitTree row's JSON entry (rows from before sizes were kept have four fields)."""
    name, mode, kind, sha, *size = stored
    return TreeItem(name, mode, kind, sha, size[0] if size else None)


def store_trees(repository_id: int, trees: Mapping[str, list[TreeItem]]) -> int:
    """Store tree objects not stored yet (committed at once: they are a cache)."""
    known = set(stored_trees(repository_id, trees))
    rows = [
        {"repository_id": repository_id, "sha": sha, "entries": [list(i) for i in items]}
        for sha, items in trees.items()
        if sha not in known
    ]
    insert_ignoring_conflicts(table_of(GitTree), rows, ("repository_id", "sha"))
    db.session.commit()
    return len(rows)


def count_files(project_id: int, *, under: str = "") -> int:
    """Files of the project's current state, all or those below the directory ``under``."""
    query = (
        select(func.count())
        .select_from(RepositoryFile)
        .where(RepositoryFile.project_id == project_id, RepositoryFile.valid_to_sync_id.is_(None))
    )
    if under:
        prefix = f"{under}/"
        query = query.where(func.substr(RepositoryFile.path, 1, len(prefix)) == prefix)
    return db.session.scalar(query) or 0


def current_files(project_id: int) -> FlatTree:
    """The project's current tree state, read through :mod:`models.queries`."""
    return {
        path: FileEntry(mode, sha, size)
        for _id, path, mode, sha, size in db.session.execute(file_rows_at(project_id))
    }


@dataclass
class ApplyPlan:
    sync_id: int
    project_id: int
    repository_id: int
    expected_current_id: int | None
    delta: Delta
    head_commit_sha: str | None
    head_tree_sha: str | None
    base_commit_sha: str | None
    total_files: int
    mode: str
    full_sync_reason: str | None = None
    api_calls: int = 0
    bytes_fetched: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    restored_from_sync_id: int | None = None
    # For a restore: the memory entry (by path) active at the restored sync.
    restored_entries: Mapping[str, int] | None = None
    # For a full sync: the head's whole tree, so every text file gets memory (not
    # only the changed ones; see _memory_candidates).
    head_files: FlatTree | None = None


def apply_sync(plan: ApplyPlan) -> None:
    """Write the plan in one transaction (see the module docstring)."""
    session = db.session
    try:
        moved = session.execute(
            update(Project)
            .where(
                Project.id == plan.project_id,
                Project.current_sync_id.is_not_distinct_from(plan.expected_current_id),
            )
            .values(current_sync_id=plan.sync_id)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise LostRaceError(
                f"project {plan.project_id} moved past sync {plan.expected_current_id}"
            )
        previous_sequence = 0
        if plan.expected_current_id is not None:
            previous_sequence = (
                session.scalar(
                    select(ProjectSync.sequence).where(ProjectSync.id == plan.expected_current_id)
                )
                or 0
            )
        delta = plan.delta
        session.execute(
            update(ProjectSync)
            .where(ProjectSync.id == plan.sync_id)
            .values(
                status=SyncStatus.SUCCEEDED,
                previous_sync_id=plan.expected_current_id,
                sequence=previous_sequence + 1,
                restored_from_sync_id=plan.restored_from_sync_id,
                base_commit_sha=plan.base_commit_sha,
                head_commit_sha=plan.head_commit_sha,
                head_tree_sha=plan.head_tree_sha,
                files_added=delta.count(ChangeKind.ADDED),
                files_removed=delta.count(ChangeKind.REMOVED),
                files_modified=len(delta.changes)
                - delta.count(ChangeKind.ADDED)
                - delta.count(ChangeKind.REMOVED),
                files_unchanged=plan.total_files - len(delta.opened),
                api_calls=plan.api_calls,
                bytes_fetched=plan.bytes_fetched,
                mode=plan.mode,
                full_sync_reason=plan.full_sync_reason,
                phase_seconds=plan.phase_seconds,
                finished_at=utcnow(),
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
        _write_files(plan)
        _write_memory(plan)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _write_files(plan: ApplyPlan) -> None:
    closed = plan.delta.closed_paths
    for batch in _chunks(closed):
        db.session.execute(
            update(RepositoryFile)
            .where(
                RepositoryFile.project_id == plan.project_id,
                RepositoryFile.valid_to_sync_id.is_(None),
                RepositoryFile.path.in_(batch),
            )
            .values(valid_to_sync_id=plan.sync_id)
            .execution_options(synchronize_session=False)
        )
    rows = [
        {
            "project_id": plan.project_id,
            "path": path,
            "mode": entry.mode,
            "sha": entry.sha,
            "size": entry.size,
            "valid_from_sync_id": plan.sync_id,
            "valid_to_sync_id": None,
        }
        for path, entry in plan.delta.opened
    ]
    bulk_insert(table_of(RepositoryFile), rows)


def _text_blob_ids(repository_id: int, shas: Iterable[str]) -> dict[str, int]:
    wanted = set(shas)
    query = select(Blob.sha, Blob.id).where(
        Blob.repository_id == repository_id, Blob.content.is_not(None)
    )
    if len(wanted) > defaults.LOOKUP_ALL_ABOVE:
        return {sha: blob_id for sha, blob_id in db.session.execute(query) if sha in wanted}
    found: dict[str, int] = {}
    for batch in _chunks(sorted(wanted)):
        found.update(
            {sha: blob_id for sha, blob_id in db.session.execute(query.where(Blob.sha.in_(batch)))}
        )
    return found


def _active_entries(project_id: int, paths: Collection[str] | None) -> dict[str, tuple[int, int]]:
    """Active memory entries (path -> entry id, blob id) of ``paths``, or all of them."""
    active: dict[str, tuple[int, int]] = {}
    query = select(MemoryEntry.id, MemoryEntry.path, MemoryEntry.blob_id).where(
        MemoryEntry.project_id == project_id,
        MemoryEntry.superseded_in_sync_id.is_(None),
    )
    if paths is None or len(paths) > defaults.LOOKUP_ALL_ABOVE:
        for entry_id, path, blob_id in db.session.execute(query):
            if paths is None or path in paths:
                active[path] = (entry_id, blob_id)
        return active
    for batch in _chunks(sorted(paths)):
        for entry_id, path, blob_id in db.session.execute(query.where(MemoryEntry.path.in_(batch))):
            active[path] = (entry_id, blob_id)
    return active


def _memory_candidates(
    plan: ApplyPlan,
) -> tuple[dict[str, FileEntry | None], dict[str, tuple[int, int]]]:
    """The paths whose memory may change (each with its new regular file, or None) and
    their active entries.

    A delta touches changed paths only. A full sync also looks at every file of the
    head without an entry: a text blob stored since the last sync (one stored before
    it counted as text, fetched again) gets its entry although its path is unchanged.
    """
    candidates = {
        c.path: c.new if c.new is not None and c.new.kind is EntryKind.FILE else None
        for c in plan.delta.changes
    }
    if plan.head_files is None:
        return candidates, _active_entries(plan.project_id, set(candidates))
    active = _active_entries(plan.project_id, None)
    for path, entry in plan.head_files.items():
        if path not in active and path not in candidates and entry.kind is EntryKind.FILE:
            candidates[path] = entry
    return candidates, active


def _write_memory(plan: ApplyPlan) -> None:
    """Memory mirrors the text regular files: an entry changes when the content does.

    A pure mode change keeps its entry (same content); a file that becomes a symlink,
    a submodule, binary or oversized loses it.
    """
    candidates, active = _memory_candidates(plan)
    if not candidates:
        return
    text_ids = _text_blob_ids(
        plan.repository_id, {e.sha for e in candidates.values() if e is not None}
    )
    supersede: list[tuple[str, int]] = []
    create: list[dict[str, Any]] = []
    restored = plan.restored_entries or {}
    for path, entry in candidates.items():
        blob_id = text_ids.get(entry.sha) if entry is not None else None
        old = active.get(path)
        if old is not None and blob_id is not None and old[1] == blob_id:
            continue
        if old is not None:
            supersede.append((path, old[0]))
        if blob_id is not None:
            create.append(
                {
                    "project_id": plan.project_id,
                    "path": path,
                    "blob_id": blob_id,
                    "created_in_sync_id": plan.sync_id,
                    "restored_from_entry_id": restored.get(path),
                }
            )
    _supersede_and_create(plan, supersede, create)


def _supersede_and_create(
    plan: ApplyPlan, supersede: list[tuple[str, int]], create: list[dict[str, Any]]
) -> None:
    """Close the superseded entries, insert the new ones and link each old to its new."""
    for batch in _chunks([entry_id for _path, entry_id in supersede]):
        db.session.execute(
            update(MemoryEntry)
            .where(MemoryEntry.id.in_(batch))
            .values(superseded_in_sync_id=plan.sync_id)
            .execution_options(synchronize_session=False)
        )
    table = table_of(MemoryEntry)
    # Only entries that replace an old one need their new id back (superseded_by).
    replacing = {path for path, _old in supersede}
    new_ids: dict[str, int] = {}
    for batch in _chunks([row for row in create if row["path"] in replacing]):
        result = db.session.execute(insert(table).returning(table.c.id, table.c.path), list(batch))
        new_ids.update({path: entry_id for entry_id, path in result})
    bulk_insert(table, [row for row in create if row["path"] not in replacing])
    links = [
        {"old_id": old_id, "new_id": new_ids[path]} for path, old_id in supersede if path in new_ids
    ]
    if links:
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("old_id"))
            .values(superseded_by_entry_id=bindparam("new_id")),
            links,
        )

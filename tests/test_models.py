"""Model invariants on both databases: one lineage chain, versioned state, active entries."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy.exc import IntegrityError

from models import (
    Blob,
    Installation,
    MemoryEntry,
    Project,
    ProjectSync,
    Repository,
    RepositoryFile,
    SyncStatus,
    SyncTrigger,
    db,
)
from models.queries import files_at, lineage, memory_entries

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40


def make_project() -> Project:
    installation = Installation(github_id=2**40, account_login="octo")
    repository = Repository(
        github_id=2**35, installation=installation, full_name="octo/hello", default_branch="main"
    )
    project = Project(repository=repository, branch="main")
    db.session.add_all([installation, repository, project])
    db.session.flush()
    return project


def succeed(project: Project, previous: ProjectSync | None) -> ProjectSync:
    sync = ProjectSync(
        project_id=project.id,
        trigger=SyncTrigger.PUSH,
        status=SyncStatus.SUCCEEDED,
        previous_sync_id=previous.id if previous else None,
        sequence=(previous.sequence or 0) + 1 if previous else 1,
    )
    db.session.add(sync)
    db.session.flush()
    return sync


def test_lineage_cannot_fork(app_context: Flask) -> None:
    project = make_project()
    first = succeed(project, None)
    succeed(project, first)
    db.session.commit()

    db.session.add(
        ProjectSync(
            project_id=project.id,
            trigger=SyncTrigger.MANUAL,
            status=SyncStatus.SUCCEEDED,
            previous_sync_id=first.id,
            sequence=3,
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    assert [s.sequence for s in db.session.scalars(lineage(project.id))] == [2, 1]


def test_github_ids_beyond_32_bits_round_trip(app_context: Flask) -> None:
    project = make_project()
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Project, project.id).repository.installation.github_id == 2**40


def test_files_at_returns_the_state_as_of_a_sync(app_context: Flask) -> None:
    project = make_project()
    s1 = succeed(project, None)
    readme = RepositoryFile(
        project_id=project.id, path="README.md", mode="100644", sha=SHA_A, valid_from_sync_id=s1.id
    )
    tool = RepositoryFile(
        project_id=project.id, path="bin/tool", mode="100755", sha=SHA_B, valid_from_sync_id=s1.id
    )
    db.session.add_all([readme, tool])
    db.session.flush()

    s2 = succeed(project, s1)  # README.md modified, bin/tool removed
    readme.valid_to_sync_id = s2.id
    tool.valid_to_sync_id = s2.id
    db.session.add(
        RepositoryFile(
            project_id=project.id,
            path="README.md",
            mode="100644",
            sha=SHA_C,
            valid_from_sync_id=s2.id,
        )
    )
    db.session.commit()

    def state(sync: ProjectSync | None) -> list[tuple[str, str]]:
        return [(f.path, f.sha) for f in db.session.scalars(files_at(project.id, sync=sync))]

    assert state(s1) == [("README.md", SHA_A), ("bin/tool", SHA_B)]
    assert state(s2) == [("README.md", SHA_C)]
    assert state(None) == state(s2)


def test_two_open_versions_of_one_path_are_refused(app_context: Flask) -> None:
    project = make_project()
    s1 = succeed(project, None)
    for sha in (SHA_A, SHA_B):
        db.session.add(
            RepositoryFile(
                project_id=project.id, path="x", mode="100644", sha=sha, valid_from_sync_id=s1.id
            )
        )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_superseded_memory_entries_are_hidden_by_default(app_context: Flask) -> None:
    project = make_project()
    s1 = succeed(project, None)
    old_blob = Blob(repository_id=project.repository_id, sha=SHA_A, size=3, content="old")
    new_blob = Blob(repository_id=project.repository_id, sha=SHA_B, size=3, content="new")
    db.session.add_all([old_blob, new_blob])
    db.session.flush()
    old = MemoryEntry(
        project_id=project.id, path="notes.md", blob_id=old_blob.id, created_in_sync_id=s1.id
    )
    db.session.add(old)
    db.session.flush()

    s2 = succeed(project, s1)
    old.superseded_in_sync_id = s2.id  # close first: one active entry per path
    db.session.flush()
    new = MemoryEntry(
        project_id=project.id, path="notes.md", blob_id=new_blob.id, created_in_sync_id=s2.id
    )
    db.session.add(new)
    db.session.flush()
    old.superseded_by_entry_id = new.id
    db.session.commit()

    active = db.session.scalars(memory_entries(project.id)).all()
    assert [(e.path, e.blob.content) for e in active] == [("notes.md", "new")]
    assert not old.is_active and new.is_active
    at_s1 = db.session.scalars(memory_entries(project.id, sync=s1)).all()
    assert [e.blob.content for e in at_s1] == ["old"]


def test_a_sync_outside_the_lineage_cannot_be_asked_for(app_context: Flask) -> None:
    project = make_project()
    failed = ProjectSync(project_id=project.id, trigger=SyncTrigger.PUSH, status=SyncStatus.FAILED)
    db.session.add(failed)
    db.session.commit()
    with pytest.raises(ValueError, match="not part of the lineage"):
        files_at(project.id, sync=failed)


def test_timestamps_are_utc_aware(app_context: Flask) -> None:
    project = make_project()
    db.session.commit()
    db.session.expire_all()
    created = db.session.get(Project, project.id).created_at
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0

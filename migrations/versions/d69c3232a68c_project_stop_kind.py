"""project.stop_kind: why a project stopped, as a value code decides by

``stopped_reason`` stays, in words for people; ``stop_kind`` (NULL while the project
syncs) says the same as one of ``app_uninstalled``, ``repository_removed``,
``repository_deleted``, ``repository_transferred``, ``branch_deleted`` or ``other``,
checked by the constraint ``ck_project_stop_kind``.

Every stopped project is given its kind from the fixed wording of its reason:

- ``the App was uninstalled from <account>``: app_uninstalled
- ``the repository was removed from the installation``: repository_removed
- ``the repository <owner/name> was deleted on GitHub``: repository_deleted
- ``transferred to <owner/name>; not synced until the App is installed on it there``:
  repository_transferred
- ``the branch <branch> was deleted on GitHub``, naming the project's own branch:
  branch_deleted (the one stop a push recreating the branch undoes; the code
  recognised it by exactly this equality before the kind existed)
- any other reason: other, so no stopped project is left without a kind.

On SQLite the constraint rebuilds ``project`` (batch mode), which project_sync,
repository_file, memory_entry and sync_request reference with ON DELETE CASCADE;
``migrations/env.py`` runs migrations there with foreign keys off, and this revision
refuses to rebuild if they are on.

Downgrade drops the constraint and the column; the reasons stay.

Revision ID: d69c3232a68c
Revises: 9b7945b7ba03
Create Date: 2026-12-02 11:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd69c3232a68c'
down_revision = '9b7945b7ba03'
branch_labels = None
depends_on = None

# StopKind's values when this revision was written (a revision never imports app code).
KINDS = (
    'app_uninstalled', 'repository_removed', 'repository_deleted',
    'repository_transferred', 'branch_deleted', 'other',
)
ALLOWED = ", ".join(f"'{kind}'" for kind in KINDS)

BACKFILL = (
    "UPDATE project SET stop_kind = CASE "
    "WHEN stopped_reason = 'the branch ' || branch || ' was deleted on GitHub' "
    "THEN 'branch_deleted' "
    "WHEN stopped_reason LIKE 'the App was uninstalled from %' THEN 'app_uninstalled' "
    "WHEN stopped_reason = 'the repository was removed from the installation' "
    "THEN 'repository_removed' "
    "WHEN stopped_reason LIKE 'the repository % was deleted on GitHub' "
    "THEN 'repository_deleted' "
    "WHEN stopped_reason LIKE "
    "'transferred to %; not synced until the App is installed on it there' "
    "THEN 'repository_transferred' "
    "ELSE 'other' END "
    "WHERE stopped_reason IS NOT NULL"
)


def _refuse_sqlite_rebuild_with_foreign_keys_on():
    if op.get_context().as_sql:
        return
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "SQLite foreign keys are on: rebuilding project would delete the rows "
            "that reference it; run this migration through migrations/env.py"
        )


def upgrade():
    _refuse_sqlite_rebuild_with_foreign_keys_on()
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stop_kind', sa.String(length=32), nullable=True))
        batch_op.create_check_constraint(
            op.f('ck_project_stop_kind'), f"stop_kind IN ({ALLOWED})"
        )
    op.execute(BACKFILL)


def downgrade():
    _refuse_sqlite_rebuild_with_foreign_keys_on()
    with op.batch_alter_table('project', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_project_stop_kind'), type_='check')
        batch_op.drop_column('stop_kind')

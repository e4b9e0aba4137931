"""project_sync.mode holds a SyncMode value, checked by the database

Every release so far wrote a ``SyncMode`` value (``noop``, ``restore``, ``delta``,
``full``, each of the last two possibly with ``+blobs``, ``+tarball``, ``+git`` or
``+git+blobs``), but the column took any string, so a row may hold something else
(a hand edit, an older build). Such values are normalised before the constraint is
added: one that begins with ``delta`` or ``full`` (in any case) becomes plain ``delta``
or ``full`` (what the sync compared is known, how its content came is not), anything
else becomes NULL (the mode of a sync is unknown then, as for a sync that never ran).
The column keeps its type (VARCHAR(32)); the constraint ``ck_project_sync_mode`` lists
the values.

On SQLite adding or dropping a constraint rebuilds the table (batch mode: copy, drop,
rename). ``migrations/env.py`` runs every migration there with foreign keys off and
checks them before committing; this revision refuses to rebuild if they are on, since
dropping the old ``project_sync`` would then delete every row that references it with
ON DELETE CASCADE (files, memory entries, sync requests).

Downgrade drops the constraint; normalised values stay normalised.

Revision ID: 9b7945b7ba03
Revises: fec9bb8cb9f2
Create Date: 2026-12-02 10:00:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '9b7945b7ba03'
down_revision = 'fec9bb8cb9f2'
branch_labels = None
depends_on = None

# SyncMode's values when this revision was written (a revision never imports app code).
MODES = (
    'noop', 'restore',
    'delta', 'delta+blobs', 'delta+tarball', 'delta+git', 'delta+git+blobs',
    'full', 'full+blobs', 'full+tarball', 'full+git', 'full+git+blobs',
)
ALLOWED = ", ".join(f"'{mode}'" for mode in MODES)


def _refuse_sqlite_rebuild_with_foreign_keys_on():
    if op.get_context().as_sql:
        return
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "SQLite foreign keys are on: rebuilding project_sync would delete the rows "
            "that reference it; run this migration through migrations/env.py"
        )


def upgrade():
    op.execute(
        "UPDATE project_sync SET mode = CASE "
        "WHEN lower(mode) LIKE 'delta%' THEN 'delta' "
        "WHEN lower(mode) LIKE 'full%' THEN 'full' "
        "ELSE NULL END "
        f"WHERE mode IS NOT NULL AND mode NOT IN ({ALLOWED})"
    )
    _refuse_sqlite_rebuild_with_foreign_keys_on()
    with op.batch_alter_table('project_sync', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_project_sync_mode'), f"mode IN ({ALLOWED})")


def downgrade():
    _refuse_sqlite_rebuild_with_foreign_keys_on()
    with op.batch_alter_table('project_sync', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_project_sync_mode'), type_='check')

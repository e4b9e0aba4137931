"""pushed heads: the push a sync was queued for (its before and after commits)

Both columns are nullable and new; existing syncs have none, so they ask GitHub for
the branch head as before.

Revision ID: a3c41e7d9b20
Revises: d69c3232a68c
Create Date: 2026-12-01 17:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c41e7d9b20'
down_revision = 'd69c3232a68c'
branch_labels = None
depends_on = None


def upgrade():
    # ADD COLUMN needs no table rebuild on SQLite, so no foreign key can cascade here.
    op.add_column('project_sync', sa.Column('pushed_before', sa.String(length=40), nullable=True))
    op.add_column('project_sync', sa.Column('pushed_after', sa.String(length=40), nullable=True))


def downgrade():
    # DROP COLUMN (SQLite 3.35+) also leaves the table in place.
    op.drop_column('project_sync', 'pushed_after')
    op.drop_column('project_sync', 'pushed_before')

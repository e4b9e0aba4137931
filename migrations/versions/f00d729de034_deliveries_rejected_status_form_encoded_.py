"""deliveries: rejected status, form-encoded flag, payload cleared by retention

Revision ID: f00d729de034
Revises: 3475c6981566
Create Date: 2026-12-01 11:50:49.764474

The ``rejected`` status needs no schema change (statuses are a VARCHAR(16) without a
constraint). Rows written before this revision hold the JSON document itself, form-
encoded deliveries included, which is what ``form_encoded = false`` means; new rows
hold the signed body as it came.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f00d729de034'
down_revision = '3475c6981566'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('form_encoded', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.alter_column('payload', existing_type=sa.TEXT(), nullable=True)


def downgrade():
    # Payloads the retention pass cleared cannot come back; an empty document stands in.
    op.execute("UPDATE webhook_delivery SET payload = '{}' WHERE payload IS NULL")
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('payload', existing_type=sa.TEXT(), nullable=False)
        batch_op.drop_column('form_encoded')

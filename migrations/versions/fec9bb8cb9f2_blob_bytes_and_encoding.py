"""blob: exact bytes and encoding of text that is not plain UTF-8; blobs stored
without content are forgotten so that a full sync fetches them again

``content_bytes`` (BYTEA on PostgreSQL) holds a text blob's bytes when ``content`` in
UTF-8 is not them: another encoding, or a NUL after git's first 8,000 bytes (which a
``text`` column cannot hold). ``encoding`` names the codec, NULL for UTF-8. Existing
UTF-8 rows are unchanged.

Blobs stored before text in any encoding was text have ``content`` NULL (marked
binary, or text with a late NUL), and a stored blob is never fetched again. Every blob
without content that no memory entry points at is deleted: ``memory_entry.blob_id`` is
the only foreign key to ``blob`` (tree entries name blobs by SHA, with their own size),
and a blob without content never has a memory entry. The next full sync of each
project fetches what its head lacks and creates the missing memory entries; truly
binary and oversized blobs are recorded again as they were (oversized ones from the
tree's size, without a download).

Downgrade drops both columns: text with a late NUL keeps its characters with U+FFFD
for each NUL, text in another encoding keeps its characters without the codec name.

Revision ID: fec9bb8cb9f2
Revises: e50182ab1326
Create Date: 2026-12-01 15:05:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'fec9bb8cb9f2'
down_revision = 'e50182ab1326'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTER TABLE, never a batch copy: on SQLite (foreign keys on) dropping the
    # old blob table of a copy would cascade to every memory entry.
    op.add_column('blob', sa.Column('content_bytes', sa.LargeBinary(), nullable=True))
    op.add_column('blob', sa.Column('encoding', sa.String(length=32), nullable=True))

    op.execute(
        "DELETE FROM blob WHERE content IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM memory_entry WHERE memory_entry.blob_id = blob.id)"
    )


def downgrade():
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), for the reason above.
    op.drop_column('blob', 'encoding')
    op.drop_column('blob', 'content_bytes')

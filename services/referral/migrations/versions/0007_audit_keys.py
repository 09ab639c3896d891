"""The audit trail's chain is keyed: each entry names the key of its HMAC; entries from before stay plain hashes.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_trail") as batch:
        # Empty: written before the trail was keyed, checked with the plain hash.
        batch.add_column(sa.Column("key_id", sa.String(40), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("audit_trail") as batch:
        batch.drop_column("key_id")

"""Wrong SMS codes across an agency are counted in a sliding window, so old ones age out instead of adding up.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "failed_tries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agency_id", sa.String(60), nullable=False),
        sa.Column("officer_id", sa.String(60), nullable=False),
        sa.Column("purpose", sa.String(10), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_failed_tries_key_at", "failed_tries", ["agency_id", "officer_id", "purpose", "at"])


def downgrade() -> None:
    op.drop_index("ix_failed_tries_key_at", "failed_tries")
    op.drop_table("failed_tries")

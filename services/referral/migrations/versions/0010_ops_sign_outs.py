"""Signing out of the ops page ends the operator's sessions on every device, not only the cookie in one browser.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_sign_outs",
        sa.Column("operator_id", sa.String(60), primary_key=True),
        sa.Column("signed_out_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ops_sign_outs")

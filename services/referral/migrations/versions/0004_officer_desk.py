"""The officer desk: one-click links spent, and wrong PINs or SMS codes counted towards a lockout.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "officer_links",
        sa.Column("token_id", sa.String(255), primary_key=True),
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.referral_id"), nullable=False),
        sa.Column("officer_id", sa.String(60), nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "officer_lockouts",
        sa.Column("agency_id", sa.String(60), primary_key=True),
        sa.Column("officer_id", sa.String(60), primary_key=True),
        sa.Column("purpose", sa.String(10), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until", UtcDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("officer_lockouts")
    op.drop_table("officer_links")

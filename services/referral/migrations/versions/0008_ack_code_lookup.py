"""Whether an agency's code is in use is one index lookup: issuing a referral no longer scans every referral.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_referrals_agency_ack_code", "referrals", ["agency_id", "ack_code"])


def downgrade() -> None:
    op.drop_index("ix_referrals_agency_ack_code", "referrals")

"""SMS acknowledgement codes of six digits: with four, an agency-wide guesser kept within the wrong-code bound would
hit one pending code about once a fortnight, and a hit stops that referral's escalation.

Codes already given keep their four digits (an officer may text them back for a week after their referral's issue).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_AWAITING_ACK = sa.text("status IN ('requested', 'delivered', 'failed')")


def _resize_code_column(to: int, was: int) -> None:
    op.drop_index("uq_referrals_awaiting_ack_code", "referrals")
    op.drop_index("ix_referrals_agency_ack_code", "referrals")
    if op.get_bind().dialect.name == "sqlite":
        # Not by copying the table, as Alembic's batch mode alters a column: other tables' foreign keys refer to
        # referrals, and SQLite checks them when the old table is dropped, inside the migration's transaction.
        op.execute(f"ALTER TABLE referrals ADD COLUMN ack_code_new VARCHAR({to})")
        op.execute("UPDATE referrals SET ack_code_new = ack_code")
        op.execute("ALTER TABLE referrals DROP COLUMN ack_code")
        op.execute("ALTER TABLE referrals RENAME COLUMN ack_code_new TO ack_code")
    else:
        op.alter_column(
            "referrals", "ack_code", type_=sa.String(to), existing_type=sa.String(was), existing_nullable=True
        )
    op.create_index(
        "uq_referrals_awaiting_ack_code",
        "referrals",
        ["agency_id", "ack_code"],
        unique=True,
        postgresql_where=_AWAITING_ACK,
        sqlite_where=_AWAITING_ACK,
    )
    op.create_index("ix_referrals_agency_ack_code", "referrals", ["agency_id", "ack_code"])


def upgrade() -> None:
    _resize_code_column(6, 4)


def downgrade() -> None:
    # A six-digit code does not fit the older column: its referral is acknowledged by its signed link alone.
    op.execute("UPDATE referrals SET ack_code = NULL WHERE length(ack_code) > 4")
    _resize_code_column(4, 6)

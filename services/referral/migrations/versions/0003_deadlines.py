"""Deadlines as rows the sweeper takes; referrals get an SMS acknowledgement code, an acceptance deadline and
the escalation level reached.

Revision ID: 0003
Revises: 0002
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Referrals nobody has taken yet: their codes must tell them apart (``TERIMA 4821`` names one referral).
_AWAITING_ACK = sa.text("status IN ('requested', 'delivered', 'failed')")


def upgrade() -> None:
    with op.batch_alter_table("referrals") as batch:
        batch.add_column(sa.Column("ack_code", sa.String(4), nullable=True))
        batch.add_column(sa.Column("accept_due_at", UtcDateTime, nullable=True))
        batch.add_column(sa.Column("escalation_level", sa.Integer, nullable=False, server_default="0"))
    op.create_index(
        "uq_referrals_awaiting_ack_code",
        "referrals",
        ["agency_id", "ack_code"],
        unique=True,
        postgresql_where=_AWAITING_ACK,
        sqlite_where=_AWAITING_ACK,
    )
    deadlines = op.create_table(
        "deadlines",
        sa.Column("referral_id", sa.String(36), sa.ForeignKey("referrals.referral_id"), primary_key=True),
        sa.Column("kind", sa.String(12), primary_key=True),
        sa.Column("next_level", sa.Integer, nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("closed_at", UtcDateTime, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_index(
        "ix_deadlines_open_due",
        "deadlines",
        ["due_at"],
        postgresql_where=sa.text("closed_at IS NULL"),
        sqlite_where=sa.text("closed_at IS NULL"),
    )
    # Referrals already waiting for an acknowledgement escalate like new ones (they have no acceptance deadline).
    referrals = sa.table(
        "referrals", sa.column("referral_id"), sa.column("status"), sa.column("ack_due_at", UtcDateTime)
    )
    waiting = op.get_bind().execute(sa.select(referrals).where(_AWAITING_ACK))
    now = datetime.now(UTC)
    rows = [
        {"referral_id": row.referral_id, "kind": "acknowledge", "next_level": 1, "due_at": row.ack_due_at,
         "updated_at": now}
        for row in waiting
    ]  # fmt: skip
    if rows:
        op.bulk_insert(deadlines, rows)


def downgrade() -> None:
    op.drop_table("deadlines")
    op.drop_index("uq_referrals_awaiting_ack_code", "referrals")
    with op.batch_alter_table("referrals") as batch:
        batch.drop_column("escalation_level")
        batch.drop_column("accept_due_at")
        batch.drop_column("ack_code")

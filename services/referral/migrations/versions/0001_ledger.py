"""The referral ledger: cases, referrals, timeline, inbox and outbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("case_code", sa.String(20), nullable=False),
        sa.Column("police_report_number", sa.String(100), nullable=False),
        sa.Column("reporting_agency", sa.String(60), nullable=False),
        sa.Column("regency_code", sa.String(5), nullable=False),
        sa.Column("reported_at", UtcDateTime, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("exploitation_types", sa.JSON, nullable=False),
        sa.Column("victims", sa.JSON, nullable=False),
        sa.Column("identity", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_cases_report_number", "cases", ["reporting_agency", "police_report_number"])
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(36), primary_key=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.case_id"), nullable=False),
        sa.Column("agency_id", sa.String(60), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("victim_refs", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("issued_at", UtcDateTime, nullable=False),
        sa.Column("ack_due_at", UtcDateTime, nullable=False),
        sa.Column("acknowledged_at", UtcDateTime, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("case_id", "agency_id", name="uq_referrals_case_agency"),
    )
    op.create_index("ix_referrals_status_due", "referrals", ["status", "ack_due_at"])
    op.create_table(
        "timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(36), sa.ForeignKey("cases.case_id"), nullable=False),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_timeline_case_id", "timeline", ["case_id"])
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(40), primary_key=True),
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(100), nullable=False, unique=True),
        sa.Column("exchange", sa.String(100), nullable=False),
        sa.Column("routing_key", sa.String(200), nullable=False),
        sa.Column("message_type", sa.String(60), nullable=False),
        sa.Column("correlation_id", sa.String(100), nullable=True),
        sa.Column("causation_id", sa.String(100), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
    )
    op.create_index("ix_outbox_unsent", "outbox", ["sent_at", "id"])


def downgrade() -> None:
    for table in ("outbox", "inbox", "timeline", "referrals", "cases"):
        op.drop_table(table)

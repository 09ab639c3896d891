"""The tamper-evident audit trail, and erased identity marked on its case.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_trail",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(60), nullable=False),
        sa.Column("officer", sa.String(200), nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("referral_id", sa.String(36), nullable=True),
        sa.Column("victim_ref", sa.String(20), nullable=True),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_trail_case_id", "audit_trail", ["case_id"])
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("identity_erased_at", UtcDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("identity_erased_at")
    op.drop_index("ix_audit_trail_case_id", "audit_trail")
    op.drop_table("audit_trail")

"""Outbox rows count their failed attempts and wait before the next; message ids take the full AMQP length.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_error", sa.String(200), nullable=True))
        batch.add_column(sa.Column("next_attempt_at", UtcDateTime, nullable=True))
        for column in ("message_id", "correlation_id", "causation_id"):
            batch.alter_column(column, type_=sa.String(255), existing_type=sa.String(100))
    with op.batch_alter_table("inbox") as batch:
        batch.alter_column("message_id", type_=sa.String(255), existing_type=sa.String(100))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.alter_column("message_id", type_=sa.String(100), existing_type=sa.String(255))
    with op.batch_alter_table("outbox") as batch:
        for column in ("message_id", "correlation_id", "causation_id"):
            batch.alter_column(column, type_=sa.String(100), existing_type=sa.String(255))
        batch.drop_column("next_attempt_at")
        batch.drop_column("last_error")
        batch.drop_column("attempts")

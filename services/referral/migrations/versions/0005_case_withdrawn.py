"""A withdrawn case is marked, so a later amendment refers no one.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from shared.database import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("withdrawn_at", UtcDateTime, nullable=True))
    # Cases withdrawn before this revision: their withdrawal is on the timeline.
    op.execute(
        "UPDATE cases SET withdrawn_at = (SELECT MIN(at) FROM timeline"
        " WHERE timeline.case_id = cases.case_id AND timeline.event = 'case_withdrawn')"
    )


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("withdrawn_at")

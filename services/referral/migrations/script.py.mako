"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}

Upgrades existing ledgers only: a new one is created from ``ledger.metadata`` at ``ledger.SCHEMA_REVISION`` (set it
to this revision; tests/integration/test_ledger_schema.py fails until both agree), so it never runs this file.
"""

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}

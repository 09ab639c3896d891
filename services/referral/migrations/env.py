"""Alembic environment: always given a live connection by ``Ledger.migrate``."""

from alembic import context

from services.referral.ledger import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment: runs on the connection handed over by ``dsar.ledger.database.migrate``."""

from __future__ import annotations

from alembic import context

from dsar.ledger.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through dsar.ledger.database.migrate(engine)")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

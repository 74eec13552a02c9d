"""outbox claims

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

A deliverer claims a mail before sending it, so two deliverers never send the same mail.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("outbox_mails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", _TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_mails", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")

"""ticket comment outbox

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09

Internal notes on tickets go through an outbox like mail (issue 8): written to the ledger first,
idempotent by key, claimed by one deliverer, retried until the ticketing system takes them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "outbox_comments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("ticket_ref", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("body_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "sending", "sent", "failed", name="mailstatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("claimed_at", _TS, nullable=True),
        sa.Column("sent_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_outbox_comments_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_comments")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_comments_key")),
    )
    op.create_index(op.f("ix_outbox_comments_request_id"), "outbox_comments", ["request_id"])
    op.create_index(op.f("ix_outbox_comments_status"), "outbox_comments", ["status"])


def downgrade() -> None:
    op.drop_table("outbox_comments")

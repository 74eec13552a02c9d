"""operators and mail outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Answers recorded by operators for systems without an API, what erasure kept on purpose,
and the outbox from which mails are delivered at most once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_mails",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("recipient_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("pending", "sent", "failed", name="mailstatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True)
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "sent_at",
            sa.DateTime(timezone=True)
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_outbox_mails_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_mails")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_mails_message_id")),
    )
    with op.batch_alter_table("outbox_mails", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_mails_request_id"), ["request_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_mails_status"), ["status"], unique=False)

    with op.batch_alter_table("system_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("operator", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("operator_note", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("retained_counts", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("system_results", schema=None) as batch_op:
        batch_op.drop_column("retained_counts")
        batch_op.drop_column("operator_note")
        batch_op.drop_column("operator")

    # Dropping the table drops its indexes; MariaDB refuses to drop an index a foreign key uses.
    op.drop_table("outbox_mails")

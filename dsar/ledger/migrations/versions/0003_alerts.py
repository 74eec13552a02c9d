"""deadline alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

The alerts the deadline watch has queued (each key once), and the indexes its scan reads
through: open requests by due date, systems waiting for an operator, open suspensions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIMESTAMP = (
    sa.DateTime(timezone=True)
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    op.create_table(
        "alerts_sent",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("sent_at", _TIMESTAMP, nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_alerts_sent_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts_sent")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_sent_key")),
    )
    # Plain CREATE INDEX: no batch mode, so SQLite never rebuilds a table (and its triggers).
    op.create_index(op.f("ix_alerts_sent_request_id"), "alerts_sent", ["request_id"])
    op.create_index("ix_requests_status_due_date", "requests", ["status", "due_date"])
    op.create_index("ix_system_results_status", "system_results", ["status"])
    op.create_index("ix_suspensions_ended_on", "suspensions", ["ended_on"])


def downgrade() -> None:
    op.drop_index("ix_suspensions_ended_on", table_name="suspensions")
    op.drop_index("ix_system_results_status", table_name="system_results")
    op.drop_index("ix_requests_status_due_date", table_name="requests")
    op.drop_table("alerts_sent")  # with its indexes (MariaDB refuses to drop one a foreign key uses)

"""retention, legal holds, suppressions, request details

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Erasure and the other rights (issue 6): what an erasure kept on purpose, on which basis and until
when (``retained_data``); operator-placed legal holds (GDPR Art. 17(3)(e)); the keyed-hash
suppression list that makes an objection to direct marketing survive re-imports; and the
request's encrypted details (corrections for rectification, the controller for a processor-only
request). A system's ``method`` grows to 200 characters.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("details_ciphertext", sa.LargeBinary(), nullable=True))
    # A vendor's method can name its own sub-steps (Zendesk: the compliance deletion's statuses).
    with op.batch_alter_table("system_results") as batch:
        batch.alter_column("method", existing_type=sa.String(length=64), type_=sa.String(length=200))
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("placed_by", sa.String(length=200), nullable=False),
        sa.Column("placed_at", _TS, nullable=False),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("released_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_legal_holds_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_request_id"), "legal_holds", ["request_id"])
    op.create_table(
        "retained_data",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("system", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("basis", sa.String(length=300), nullable=False),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("hold_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kept_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_retained_data_request_id_requests")
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["legal_holds.id"], name=op.f("fk_retained_data_hold_id_legal_holds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retained_data")),
        sa.UniqueConstraint("request_id", "system", "category", name=op.f("uq_retained_data_request_id")),
    )
    op.create_index(op.f("ix_retained_data_request_id"), "retained_data", ["request_id"])
    op.create_index("ix_retained_data_status_until", "retained_data", ["status", "until"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_suppressions_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("key", name=op.f("uq_suppressions_key")),
    )


def downgrade() -> None:
    op.drop_table("suppressions")
    op.drop_index("ix_retained_data_status_until", table_name="retained_data")
    op.drop_table("retained_data")
    op.drop_table("legal_holds")
    with op.batch_alter_table("system_results") as batch:
        batch.alter_column("method", existing_type=sa.String(length=200), type_=sa.String(length=64))
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("details_ciphertext")

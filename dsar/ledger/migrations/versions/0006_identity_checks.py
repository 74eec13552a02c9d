"""identity checks

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Identity verification (issue 4): one row per attempt to confirm the requester is the data
subject, by BankID (OIDC), an e-mail code or an operator's review. Secrets as keyed hashes only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "identity_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column("state_hash", sa.String(length=64), nullable=True),
        sa.Column("login_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("completed_at", _TS, nullable=True),
        sa.Column("reminded_at", _TS, nullable=True),
        sa.Column("level", sa.String(length=32), nullable=True),
        sa.Column("matched_by", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_identity_checks_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_checks")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_identity_checks_link_hash")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_identity_checks_state_hash")),
    )
    op.create_index(op.f("ix_identity_checks_request_id"), "identity_checks", ["request_id"])
    op.create_index(op.f("ix_identity_checks_status"), "identity_checks", ["status"])


def downgrade() -> None:
    op.drop_table("identity_checks")

"""open request keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

The database itself refuses a second open request of the same type for the same identifier,
even when two intake processes register it at the same moment. Open requests that exist
already get their keys (the first one keeps a key if an earlier race left two).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OPEN = ("received", "in_progress", "awaiting_operator", "incomplete")


def upgrade() -> None:
    keys = op.create_table(
        "open_request_keys",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["requests.id"], name=op.f("fk_open_request_keys_request_id_requests")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_open_request_keys")),
    )
    op.create_index(op.f("ix_open_request_keys_request_id"), "open_request_keys", ["request_id"])
    op.bulk_insert(keys, _existing_keys())


def _existing_keys() -> list[dict[str, str]]:
    requests = sa.table(
        "requests", *(sa.column(c) for c in ("id", "type", "status", "email_hash", "phone_hash"))
    )
    query = sa.select(requests).where(requests.c.status.in_(_OPEN)).order_by(requests.c.id)
    held: dict[str, str] = {}
    for row in op.get_bind().execute(query):
        for name, value in (("email", row.email_hash), ("phone", row.phone_hash)):
            if value:
                held.setdefault(f"{row.type}:{name}:{value}", row.id)
    return [{"key": key, "request_id": request_id} for key, request_id in held.items()]


def downgrade() -> None:
    op.drop_table("open_request_keys")

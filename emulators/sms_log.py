"""The demo's SMS send log: what we sent through LINK Mobility, to whom and when.

LINK Mobility has no API to search or erase a person's traffic data, so the controller's
own send log is the searchable record (``datasets/sms_log.yaml``), and LINK itself is asked
by e-mail (the ``link-mobility`` manual system).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from emulators.internal_db import DEMO_SUBJECT, OTHER_PEOPLE

__all__ = ["create_schema", "seed_demo_rows", "sms_log"]

metadata = sa.MetaData()
sms_log = sa.Table(
    "sms_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sent_at", sa.DateTime, nullable=False),
    sa.Column("recipient_phone", sa.String(20), nullable=False, index=True),
    sa.Column("sender_id", sa.String(11), nullable=False),
    sa.Column("message_text", sa.String(640), nullable=False),
    sa.Column("provider", sa.String(40), nullable=False),
    sa.Column("provider_message_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
)

_TEXTS = (
    "Din engangskode til Fjordlys er 483920. Den gjelder i 10 minutter.",
    "Hei! Fakturaen din på kr 598,00 forfaller 15.04. Hilsen Fjordlys",
    "Ordren din er sendt og kommer i løpet av 2-3 dager.",
)


def create_schema(engine: sa.Engine) -> None:
    metadata.create_all(engine)


def seed_demo_rows(engine: sa.Engine) -> None:
    """Three messages to the demo subject, one to each of the others."""
    start = dt.datetime(2025, 4, 1, 8, 0)
    rows = [
        _row(DEMO_SUBJECT.phone, text, start + dt.timedelta(days=9 * n), n) for n, text in enumerate(_TEXTS)
    ]
    rows += [_row(p.phone, _TEXTS[0], start, 10 + n) for n, p in enumerate(OTHER_PEOPLE)]
    with engine.begin() as conn:
        conn.execute(sms_log.insert(), rows)


def _row(phone: str, text: str, sent_at: dt.datetime, n: int) -> dict[str, object]:
    return {
        "sent_at": sent_at,
        "recipient_phone": phone,
        "sender_id": "Fjordlys",
        "message_text": text,
        "provider": "LINK Mobility",
        "provider_message_id": f"lm-{2025040100 + n}",
        "status": "DELIVERED",
    }

"""The product database of Fjordlys AS, a fictional Norwegian SaaS company, for demo and tests.

Six tables, described for erasure by ``datasets/app_db.yaml``: customers, their orders and
order lines, support messages, login events, and newsletter subscriptions (keyed by e-mail
only, since subscribers need not be customers). Portable across SQLite, PostgreSQL and
MariaDB: bounded ``String`` for indexed columns, explicit foreign keys, naive UTC timestamps.

The flags the other rights set (:mod:`integrations.rights`) are ``BOOLEAN NOT NULL`` columns
with a server default, so rows inserted by code that does not know them get the usual state:
``processing_restricted`` (customers, orders; Art. 18) defaults to false, and
``customers.marketing_opt_in`` (cleared on objection to direct marketing) to true.

:func:`seed_demo_rows` inserts the demo subject (:data:`DEMO_SUBJECT`, Kari Nordmann) and a few
other people, including a namesake, so tests can prove that erasure touches only the subject.
All data is fictional.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa

__all__ = [
    "DEMO_SUBJECT",
    "OTHER_PEOPLE",
    "Person",
    "create_schema",
    "metadata",
    "seed_demo_rows",
    "seed_person",
]

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, index=True),
    sa.Column("phone", sa.String(20), index=True),
    sa.Column("full_name", sa.String(200), nullable=False),
    sa.Column("street_address", sa.String(200)),
    sa.Column("postal_code", sa.String(10)),
    sa.Column("city", sa.String(100)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("marketing_opt_in", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("processing_restricted", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Lookups compare lower(email): index that on PostgreSQL (MariaDB compares case-insensitively anyway).
sa.Index("ix_customers_email_lower", sa.func.lower(customers.c.email)).ddl_if(dialect="postgresql")

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), index=True),
    sa.Column("order_number", sa.String(20), nullable=False, unique=True),
    sa.Column("ordered_at", sa.DateTime, nullable=False),
    sa.Column("total_nok", sa.Numeric(12, 2), nullable=False),
    sa.Column("shipping_address", sa.String(300)),
    sa.Column("notes", sa.String(1000)),
    sa.Column("processing_restricted", sa.Boolean, nullable=False, server_default=sa.false()),
)

order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False, index=True),
    sa.Column("product", sa.String(100), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price_nok", sa.Numeric(12, 2), nullable=False),
    sa.Column("gift_message", sa.String(500)),
)

support_messages = sa.Table(
    "support_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("sent_at", sa.DateTime, nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)

newsletter_subscriptions = sa.Table(
    "newsletter_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, index=True),
    sa.Column("subscribed_at", sa.DateTime, nullable=False),
    sa.Column("confirmed", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(50), nullable=False),
)

login_events = sa.Table(
    "login_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id"), nullable=False, index=True),
    sa.Column("occurred_at", sa.DateTime, nullable=False),
    sa.Column("ip_address", sa.String(45), nullable=False),
    sa.Column("user_agent", sa.String(300)),
)

_START = dt.datetime(2025, 3, 14, 9, 30)
_PRODUCTS = (("Fjordlys Regnskap Basis", Decimal("499.00")), ("Lisens, ekstra bruker", Decimal("149.50")))


@dataclass(frozen=True)
class Person:
    """A fictional person in the demo database."""

    email: str
    phone: str
    name: str
    street_address: str
    postal_code: str
    city: str


DEMO_SUBJECT = Person(
    "Kari.Nordmann@Example.no", "+4791234567", "Kari Nordmann", "Storgata 12", "0184", "Oslo"
)
OTHER_PEOPLE = (
    Person(
        "ola.nordmann@example.no", "+4798765432", "Ola Nordmann", "Thorvald Meyers gate 7", "0555", "Oslo"
    ),
    Person("kari.nordmann@eksempel.no", "+4747112233", "Kari Nordmann", "Bryggen 3", "5003", "Bergen"),
    Person("ingrid.hansen@example.no", "+4740506070", "Ingrid Hansen", "Munkegata 20", "7013", "Trondheim"),
)


def create_schema(engine: sa.Engine) -> None:
    """Create the six tables (no-op for tables that exist)."""
    metadata.create_all(engine)


def seed_person(
    engine: sa.Engine,
    *,
    email: str,
    phone: str,
    name: str,
    street_address: str = "Storgata 12",
    postal_code: str = "0184",
    city: str = "Oslo",
    orders_placed: int = 2,
) -> None:
    """Insert a customer with orders (two lines each), two support messages, three logins, a subscription."""
    address = f"{name}, {street_address}, {postal_code} {city}"
    with engine.begin() as conn:
        row = {"email": email, "phone": phone, "full_name": name, "created_at": _START}
        place = {"street_address": street_address, "postal_code": postal_code, "city": city}
        customer_id = _insert(conn, customers.insert().values(**row, **place))
        for number in range(orders_placed):
            _seed_order(conn, customer_id, number, address)
        _seed_activity(conn, customer_id, email)


def _seed_order(conn: sa.Connection, customer_id: int, number: int, address: str) -> None:
    """One order of both products, shipped to ``address``."""
    total = sum((price * (number + 1) for _, price in _PRODUCTS), Decimal("0.00"))
    order_id = _insert(
        conn,
        orders.insert().values(
            customer_id=customer_id,
            order_number=f"FL-{customer_id:05d}-{number + 1}",
            ordered_at=_START + dt.timedelta(days=30 * number),
            total_nok=total,
            shipping_address=address,
            notes="Ring på døra, takk." if number == 0 else None,
        ),
    )
    for product, price in _PRODUCTS:
        gift = "Gratulerer med dagen!" if number == 0 else None
        values = {"product": product, "quantity": number + 1, "unit_price_nok": price, "gift_message": gift}
        conn.execute(order_lines.insert().values(order_id=order_id, **values))


def _insert(conn: sa.Connection, statement: sa.Insert) -> int:
    """Run an INSERT and return the new row's primary key."""
    key = conn.execute(statement).inserted_primary_key
    assert key is not None
    return int(key[0])


def _seed_activity(conn: sa.Connection, customer_id: int, email: str) -> None:
    """Two support messages, three logins and a confirmed newsletter subscription."""
    for day in range(2):
        body = f"Hei! Jeg får ikke logget inn med {email}. Hilsen kunde {customer_id}."
        sent_at = _START + dt.timedelta(days=day + 1)
        conn.execute(
            support_messages.insert().values(
                customer_id=customer_id, sent_at=sent_at, subject="Innlogging", body=body
            )
        )
    for hour in range(3):
        event = {
            "occurred_at": _START + dt.timedelta(hours=hour),
            "ip_address": f"192.0.2.{customer_id % 250}",
        }
        conn.execute(login_events.insert().values(customer_id=customer_id, user_agent="Mozilla/5.0", **event))
    subscription = {"subscribed_at": _START, "confirmed": True, "source": "signup"}
    conn.execute(newsletter_subscriptions.insert().values(email=email, **subscription))


def seed_demo_rows(engine: sa.Engine) -> None:
    """Insert the demo subject, three other people and a subscriber who is not a customer."""
    for person in (DEMO_SUBJECT, *OTHER_PEOPLE):
        seed_person(
            engine,
            email=person.email,
            phone=person.phone,
            name=person.name,
            street_address=person.street_address,
            postal_code=person.postal_code,
            city=person.city,
        )
    with engine.begin() as conn:
        subscriber = {"email": "per.hansen@example.no", "subscribed_at": _START, "confirmed": False}
        conn.execute(newsletter_subscriptions.insert().values(source="blog", **subscriber))

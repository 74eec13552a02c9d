"""The ledger's tables: requests, their systems, their documents, and the event chain.

Subject identifiers are stored only encrypted (``subject_ciphertext``) and as keyed hashes;
nothing else in these tables holds personal data. Exported data waiting to be rendered is
kept encrypted in ``system_results.payload_ciphertext``.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AlertSent",
    "Base",
    "Document",
    "Event",
    "IdentityCheck",
    "IdentityStatus",
    "LegalHold",
    "MailStatus",
    "OpenRequestKey",
    "OutboxComment",
    "OutboxMail",
    "Request",
    "RequestStatus",
    "RequestType",
    "RetainedData",
    "Suppression",
    "Suspension",
    "SystemResult",
    "SystemStatus",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# MariaDB/MySQL DATETIME drops fractions of a second unless asked; the event chain hashes them.
Timestamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: Timestamp}


class RequestType(enum.StrEnum):
    ACCESS = "access"
    ERASURE = "erasure"
    RECTIFICATION = "rectification"
    RESTRICTION = "restriction"
    OBJECTION = "objection"
    PORTABILITY = "portability"


class RequestStatus(enum.StrEnum):
    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    AWAITING_OPERATOR = "awaiting_operator"
    AWAITING_SUBJECT = "awaiting_subject"  # asked the subject to confirm their identity; clock suspended
    INCOMPLETE = "incomplete"  # a system gave no definite answer; needs attention
    COMPLETED = "completed"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self not in (RequestStatus.COMPLETED, RequestStatus.CLOSED)


class SystemStatus(enum.StrEnum):
    PENDING = "pending"
    FOUND = "found"
    NONE = "none"
    FAILED = "failed"
    ERASED = "erased"
    MANUAL = "manual"  # answered by a named operator
    RETAINED = "retained"
    AWAITING_OPERATOR = "awaiting_operator"  # no API: waiting for an operator's answer
    APPLIED = "applied"  # a rectification, restriction or suppression was carried out
    NOT_APPLICABLE = "not_applicable"  # the right does not concern this system (e.g. no marketing)

    @property
    def is_definite(self) -> bool:
        return self not in (SystemStatus.PENDING, SystemStatus.FAILED, SystemStatus.AWAITING_OPERATOR)


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Request(Base):
    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[RequestType] = mapped_column(_enum(RequestType))
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus), index=True)
    checkpoint: Mapped[str] = mapped_column(String(32), default="registered")
    received_at: Mapped[datetime] = mapped_column()
    received_date: Mapped[date] = mapped_column(Date)  # Europe/Oslo calendar date of receipt
    due_date: Mapped[date] = mapped_column(Date, index=True)
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    extension_reason: Mapped[str | None] = mapped_column(Text)
    ticket_ref: Mapped[str | None] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(2), default="nb")
    subject_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    details_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)  # corrections, controller
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    closed_at: Mapped[datetime | None] = mapped_column()

    systems: Mapped[list[SystemResult]] = relationship(
        back_populates="request", order_by="SystemResult.system"
    )
    suspensions: Mapped[list[Suspension]] = relationship(order_by="Suspension.started_on")

    def __repr__(self) -> str:
        return f"Request({self.id}, {self.type}, {self.status})"


class OpenRequestKey(Base):
    """Which open request holds a (type, identifier hash) pair: the database refuses a second one.

    Checking for an identical open request and then inserting would let two intake processes
    both register it; this table's primary key makes the second insert fail instead. Rows are
    removed when their request completes or closes.
    """

    __tablename__ = "open_request_keys"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)  # "<type>:<email|phone>:<hash>"
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)


class Suspension(Base):
    """An interval in which the clock stood still while identity information was awaited."""

    __tablename__ = "suspensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    started_on: Mapped[date] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(200))


class IdentityStatus(enum.StrEnum):
    PENDING = "pending"  # sent to the subject, not answered yet
    VERIFIED = "verified"
    REJECTED = "rejected"  # an operator refused, or the proof did not match
    EXPIRED = "expired"  # too late, too many attempts, or replaced by a newer challenge


class IdentityCheck(Base):
    """One attempt to confirm that the requester is the data subject (GDPR Art. 12(6)).

    Secrets are kept only as keyed hashes (the link token, the e-mail code, the OIDC state);
    what the login needs back from the callback (nonce, PKCE verifier) is encrypted.
    """

    __tablename__ = "identity_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))  # bankid | email_code | operator | prior
    status: Mapped[IdentityStatus] = mapped_column(_enum(IdentityStatus), index=True)
    link_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # the subject's personal link
    code_hash: Mapped[str | None] = mapped_column(String(64))  # e-mail one-time code
    state_hash: Mapped[str | None] = mapped_column(String(64), unique=True)  # OIDC state of the last login
    login_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)  # nonce + PKCE verifier, encrypted
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    reminded_at: Mapped[datetime | None] = mapped_column()
    level: Mapped[str | None] = mapped_column(String(32))  # level of assurance reached (bankid)
    matched_by: Mapped[str | None] = mapped_column(String(32))  # national_id | name_birthdate | name
    reason: Mapped[str | None] = mapped_column(String(200))  # PII-free, why it failed
    decided_by: Mapped[str | None] = mapped_column(String(200))  # the operator, for operator review


class SystemResult(Base):
    """One row per request x configured system: what the system answered, in counts."""

    __tablename__ = "system_results"
    __table_args__ = (UniqueConstraint("request_id", "system"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    system: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[SystemStatus] = mapped_column(_enum(SystemStatus))
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # category -> records found
    erased_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)  # category -> records erased
    method: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)  # PII-free summary of the last failure
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    payload_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted export
    looked_up_at: Mapped[datetime | None] = mapped_column()
    erased_at: Mapped[datetime | None] = mapped_column()
    verified_at: Mapped[datetime | None] = mapped_column()
    operator: Mapped[str | None] = mapped_column(String(200))  # who answered for a system without an API
    operator_note: Mapped[str | None] = mapped_column(Text)
    retained_counts: Mapped[dict[str, Any]] = mapped_column(
        default=dict
    )  # category -> records kept on purpose

    request: Mapped[Request] = relationship(back_populates="systems")


class Document(Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))  # of the clear bytes; the file is encrypted
    created_at: Mapped[datetime] = mapped_column()
    purged_at: Mapped[datetime | None] = mapped_column()  # the retention period ended; file removed


class MailStatus(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by one deliverer; others leave it alone
    SENT = "sent"
    FAILED = "failed"


class OutboxMail(Base):
    """A mail the pipeline must send; written first, delivered after, sent at most once."""

    __tablename__ = "outbox_mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    recipient_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)  # recipient, subject and body, encrypted
    status: Mapped[MailStatus] = mapped_column(_enum(MailStatus), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()
    claimed_at: Mapped[datetime | None] = mapped_column()


class OutboxComment(Base):
    """An internal note the pipeline must add to a ticket; written first, delivered after, once.

    ``key`` makes queuing idempotent (a repeated webhook queues nothing twice); the status cycle
    is the mail outbox's (``MailStatus``): pending, claimed by one deliverer (sending), sent, or
    failed for good (the ticketing system refused it: retrying will not help).
    """

    __tablename__ = "outbox_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"), index=True)
    ticket_ref: Mapped[str] = mapped_column(String(128))  # "zendesk:<ticket id>"
    kind: Mapped[str] = mapped_column(String(64))
    body_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)  # the note, encrypted
    status: Mapped[MailStatus] = mapped_column(_enum(MailStatus), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # PII-free summary of the last failure
    created_at: Mapped[datetime] = mapped_column()
    claimed_at: Mapped[datetime | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column()


class Event(Base):
    """Append-only, hash-chained record of everything that happens to a request."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("request_id", "seq"),
        Index("ix_events_kind_occurred_at", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime] = mapped_column()
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AlertSent(Base):
    """A deadline alert that was queued for the privacy mailbox; its key makes it go out once."""

    __tablename__ = "alerts_sent"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"), index=True)
    sent_at: Mapped[datetime] = mapped_column()
    message_id: Mapped[str] = mapped_column(String(200))


class LegalHold(Base):
    """An operator's hold on erasure for legal claims (GDPR Art. 17(3)(e)); ``system`` None = all."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    system: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))  # the claim's reference; no personal data
    placed_by: Mapped[str] = mapped_column(String(200))
    placed_at: Mapped[datetime] = mapped_column()
    released_by: Mapped[str | None] = mapped_column(String(200))
    released_at: Mapped[datetime | None] = mapped_column()


class RetainedData(Base):
    """What an erasure kept on purpose in one system: category, count, legal basis, until when.

    ``status`` is ``kept`` until the retention job ends it: ``erased`` (by the system's API or
    confirmed by a named operator). ``until`` is None while a legal hold (``hold_id``) lasts.
    """

    __tablename__ = "retained_data"
    __table_args__ = (UniqueConstraint("request_id", "system", "category"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    system: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    basis: Mapped[str] = mapped_column(String(300))
    until: Mapped[date | None] = mapped_column(Date)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("legal_holds.id"))
    status: Mapped[str] = mapped_column(String(16))  # kept | erasing (claimed by the job) | due | erased
    kept_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    ended_by: Mapped[str | None] = mapped_column(String(200))


class Suppression(Base):
    """A keyed hash of an identifier that must never get direct marketing again (Art. 21(2), 7(3))."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)  # "email:<hash>" | "phone:<hash>"
    reason: Mapped[str] = mapped_column(String(32))  # objection | consent_withdrawn
    request_id: Mapped[str | None] = mapped_column(ForeignKey("requests.id"))
    created_at: Mapped[datetime] = mapped_column()


# What the deadline watch's scan (dsar.alerts) reads through: open requests by due date, systems
# and suspensions in a waiting state.
Index("ix_requests_status_due_date", Request.status, Request.due_date)
Index("ix_system_results_status", SystemResult.status)
Index("ix_suspensions_ended_on", Suspension.ended_on)
Index("ix_retained_data_status_until", RetainedData.status, RetainedData.until)

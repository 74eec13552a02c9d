"""The ledger: the source of truth for every request, system result, document and event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from dsar.crypto import Cipher
from dsar.ledger.database import DEFAULT_RETRY, LedgerUnavailable, RetryPolicy, make_engine, migrate, retrying
from dsar.ledger.repository import Keys
from dsar.settings import Settings

__all__ = ["Ledger", "LedgerUnavailable", "RetryPolicy"]

T = TypeVar("T")


class Ledger:
    """Engine, sessions and keys for one ledger database; migrated when opened."""

    def __init__(self, settings: Settings, *, apply_migrations: bool = True) -> None:
        self.engine = make_engine(settings.ledger_url)
        if apply_migrations:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.retry_policy = DEFAULT_RETRY
        self.keys = Keys(
            cipher=Cipher(settings.secret("encryption_key")), hash_key=settings.secret("hash_key")
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on error.

        A pooled connection the server dropped is replaced before the transaction starts (the
        engine pings it); an error in the middle reaches the caller. To have the body run again
        on such an error, use :meth:`transaction`.
        """
        with self._sessions.begin() as session:
            yield session

    def transaction(self, fn: Callable[[Session], T], *, policy: RetryPolicy | None = None) -> T:
        """Run ``fn(session)`` in one transaction and return its result; on a transient database
        error (connection lost, server restarted, serialization failure, deadlock, lock timeout,
        SQLite busy) roll back and run it again, with backoff, a bounded number of times.

        ``fn`` must do all its ledger work through the session it is given and be safe to run
        again from the start (read what it needs inside, check before it writes): a step is then
        recorded once. Non-transient errors propagate at once; exhausted retries raise
        :class:`LedgerUnavailable` (PII-free, a ``SQLAlchemyError``).
        """
        return retrying(self._sessions, fn, policy=policy or self.retry_policy)

    def close(self) -> None:
        self.engine.dispose()

"""The ledger: the source of truth for every request, system result, document and event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from dsar.crypto import Cipher
from dsar.ledger.database import make_engine, migrate
from dsar.ledger.repository import Keys
from dsar.settings import Settings

__all__ = ["Ledger"]


class Ledger:
    """Engine, sessions and keys for one ledger database; migrated when opened."""

    def __init__(self, settings: Settings, *, apply_migrations: bool = True) -> None:
        self.engine = make_engine(settings.ledger_url)
        if apply_migrations:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.keys = Keys(
            cipher=Cipher(settings.secret("encryption_key")), hash_key=settings.secret("hash_key")
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commits on success, rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()

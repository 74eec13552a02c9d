"""Real databases for tests: a temporary SQLite file, or a throw-away schema on the loopback
PostgreSQL / database on the loopback MariaDB, so concurrent runs never collide.

The servers are part of this machine kind and of CI; when one is unreachable the tests fail
loudly instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

__all__ = ["make_database_url"]

POSTGRES_URL = os.environ.get("DSAR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("DSAR_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@contextmanager
def make_database_url(kind: str) -> Iterator[str]:
    """Yield the URL of a fresh, empty database of ``kind``; drop it afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite+pysqlite:///{folder}/test.db"
        return
    name = f"t_{secrets.token_hex(6)}"
    create, drop = _ddl(kind, name)
    # pre-ping: a server restarted meanwhile (tests/fault_scenarios.py) must not fail the drop
    admin = sa.create_engine(POSTGRES_URL if kind == "postgresql" else MARIADB_URL, pool_pre_ping=True)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(create))
        try:
            yield _scoped_url(kind, name)
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(drop))
    finally:
        admin.dispose()


def _ddl(kind: str, name: str) -> tuple[str, str]:
    """CREATE and DROP for a scratch schema (PostgreSQL) or database (MariaDB)."""
    if kind == "postgresql":
        return f"CREATE SCHEMA {name}", f"DROP SCHEMA {name} CASCADE"
    if kind == "mariadb":
        return f"CREATE DATABASE {name} CHARACTER SET utf8mb4", f"DROP DATABASE {name}"
    raise ValueError(f"unknown database kind {kind!r}")


def _scoped_url(kind: str, name: str) -> str:
    """The server URL pointed at the scratch schema or database."""
    if kind == "postgresql":
        url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
    else:
        url = sa.make_url(MARIADB_URL).set(database=name).update_query_dict({"charset": "utf8mb4"})
    return url.render_as_string(hide_password=False)

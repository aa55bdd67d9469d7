"""Database engines and migrations: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite:///./switchboard.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url() -> str:
    return os.environ.get("SWITCHBOARD_DATABASE_URL") or DEFAULT_URL


def _driver(url: str, *, asynchronous: bool) -> str:
    scheme, _, rest = url.partition("://")
    base = scheme.split("+")[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}" if asynchronous else f"sqlite://{rest}"
    if base in {"postgresql", "postgres"}:
        return f"postgresql+psycopg://{rest}"
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints (copying the WAL into the database, with an fsync) run in a thread of their
    # own (see store.thread.Checkpointer), never inside a commit an acknowledgement waits for.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB: the turn indexes stay in memory
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str | None = None) -> AsyncEngine:
    """The one async engine of a process."""
    url = url or database_url()
    if is_sqlite(url):
        # One connection (plus the acknowledgement writer's, see ack_engine): SQLite has one
        # writer, and more connections only wait in its busy handler (sleeps up to 100 ms).
        engine = create_async_engine(_driver(url, asynchronous=True), pool_size=1,
                                     max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(_driver(url, asynchronous=True), pool_size=10,
                                     max_overflow=10, pool_pre_ping=True)
    return engine


def sqlite_thread_engine(engine: AsyncEngine) -> Engine | None:
    """On SQLite, a synchronous engine for a database thread: a whole transaction is one hop
    to that thread, instead of one turn of the event loop per statement."""
    if engine.dialect.name != "sqlite":
        return None
    sync = sa_create_engine(engine.url.set(drivername="sqlite"), pool_size=1, max_overflow=0,
                            connect_args={"check_same_thread": False})
    event.listen(sync, "connect", _sqlite_pragmas)
    return sync


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Apply Alembic migrations (`switchboard db upgrade`; `serve` calls it at start)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", _driver(url or database_url(), asynchronous=False)
                        .replace("%", "%%"))
    command.upgrade(cfg, revision)

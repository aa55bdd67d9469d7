"""Where the database is and its schema: the URL (SQLite by default, PostgreSQL by URL) and
Alembic migrations. The engines and SQLite's speed machinery are in `store/database.py`."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

DEFAULT_URL = "sqlite:///./switchboard.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url() -> str:
    return os.environ.get("SWITCHBOARD_DATABASE_URL") or DEFAULT_URL


def driver_url(url: str, *, asynchronous: bool) -> str:
    """The URL with the driver Switchboard uses: aiosqlite or sqlite, psycopg."""
    scheme, _, rest = url.partition("://")
    base = scheme.split("+")[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}" if asynchronous else f"sqlite://{rest}"
    if base in {"postgresql", "postgres"}:
        return f"postgresql+psycopg://{rest}"
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Apply Alembic migrations (`switchboard db upgrade`; `serve` calls it at start)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", driver_url(url or database_url(), asynchronous=False)
                        .replace("%", "%%"))
    command.upgrade(cfg, revision)

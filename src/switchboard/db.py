"""Where the database is and its schema: the URL (SQLite by default, PostgreSQL by URL) and
Alembic migrations. The engines and SQLite's speed machinery are in `store/database.py`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

DEFAULT_URL = "sqlite:///./switchboard.db"
MIGRATIONS = Path(__file__).with_name("migrations")


ENV = "SWITCHBOARD_DATABASE_URL"


def database_url() -> str:
    return os.environ.get(ENV) or DEFAULT_URL


@dataclass(frozen=True)
class Located:
    """The database a command uses, and how it was found (said when an answer is empty)."""

    url: str
    how: str

    def shown(self) -> str:
        """The URL without its password, for messages."""
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy parses: say it as given
            return self.url

    def missing(self) -> str | None:
        """Why this database cannot be read (a SQLite file that does not exist), or None."""
        if not is_sqlite(self.url):
            return None
        path = sqlite_path(self.url)
        if path is None or Path(path).exists():
            return None
        return f"no database at {self.shown()} ({self.how})"


def locate(config_path: str | Path, configured: str = "") -> Located:
    """The database `serve` and every command use, the same way: `SWITCHBOARD_DATABASE_URL`,
    else the config's `database:` key, else `switchboard.db` beside the config file."""
    if os.environ.get(ENV):
        return Located(os.environ[ENV], f"from {ENV}")
    folder = Path(config_path).resolve().parent
    if configured:
        return Located(_beside(configured, folder), f"from database: in {config_path}")
    return Located(f"sqlite:///{folder / 'switchboard.db'}", f"beside {config_path}")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    rest = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    return None if rest in ("", ":memory:") else rest


def _beside(url: str, folder: Path) -> str:
    """A relative SQLite path in the config is relative to the config's folder."""
    if not is_sqlite(url) or ":///" not in url:
        return url
    scheme, path = url.split(":///", 1)
    if path.startswith("/") or path.startswith(":memory:") or not path:
        return url
    return f"{scheme}:///{folder / path}"


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

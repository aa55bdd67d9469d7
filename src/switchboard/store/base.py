"""Shared plumbing of the store: the engine, short transactions, times, cursors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from switchboard.clock import Clock


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def encode_cursor(at: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{iso(at)}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError on a cursor we did not make."""
    padded = cursor + "=" * (-len(cursor) % 4)
    at, _, ident = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
    if not ident:
        raise ValueError("bad cursor")
    return datetime.fromisoformat(at.replace("Z", "+00:00")), ident


class StoreBase:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.worker_id: str | None = None
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncSession]:
        """One short transaction: committed on success, rolled back on error."""
        async with self._sessions() as db, db.begin():
            yield db

    def naive(self, value: datetime) -> datetime:
        """Times as bound parameters: SQLite compares strings, so drop the zone there."""
        return value.replace(tzinfo=None) if self.is_sqlite else value

"""How long one session sweep takes over 100,000 sessions.

    python bench/sessions_sweep.py [--sessions 100000] [--database-url URL]

Fills a fresh database (SQLite by default; with --database-url, a scratch PostgreSQL database:
the bench leaves its rows there) with live sessions of one agent, then times the sweep that
`serve` runs on its schedule: once when nothing is due (the usual case), once when every
session goes idle, once when every session ends.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from datetime import timedelta

from sqlalchemy import insert

from switchboard import db
from switchboard.clock import Clock
from switchboard.config import SessionPolicy
from switchboard.models import Session
from switchboard.store import Store, create_engine


async def fill(store: Store, count: int) -> None:
    now = store.clock.now()
    rows = [{"id": f"ses_{secrets.token_hex(10)}", "agent": "triager",
             "scope_key": f"slack-acme/C{i % 500}/thread/{i}", "state": "live", "source": "slack",
             "user_id": f"U{i % 5000}", "user_name": "", "started_at": now,
             "last_activity_at": now, "turn_count": 1, "context": {}}
            for i in range(count)]
    async with store.db.tx() as session:
        for start in range(0, count, 5000):
            await session.exec(insert(Session), params=rows[start:start + 5000])


async def timed(label: str, store: Store, policy: SessionPolicy) -> None:
    started = time.perf_counter()
    moved = await store.sessions.sweep("triager", policy)
    elapsed = time.perf_counter() - started
    print(f"{label:<38} {len(moved):>8} sessions moved  {elapsed * 1000:>9.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/sweep.db"
    db.upgrade(url)
    engine = create_engine(url)
    clock = Clock()
    store = Store(engine, clock)
    policy = SessionPolicy(idle_timeout=timedelta(minutes=30), max_duration=timedelta(hours=4))
    print(f"database: {engine.dialect.name}; filling {args.sessions:,} live sessions ...")
    await fill(store, args.sessions)
    await timed("sweep, nothing due", store, policy)
    clock.advance(timedelta(minutes=31))
    await timed("sweep, every session goes idle", store, policy)
    clock.advance(timedelta(minutes=31))
    await timed("sweep, every session ends", store, policy)
    await timed("sweep again, nothing left to do", store, policy)
    store.close()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())

"""The statements the once-a-second sweeps run read through an index, on a SQLite database
with many turns and sessions and its statistics (ANALYZE): the sweeps share the read connection
with the operator API, so a scan there stalls every operator query behind it (at a million
turns, 2-3 s each second; bench/README.md, "queries.py"). Real SQLite file, the store's own
code; each statement it runs is explained by SQLite itself."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from switchboard.clock import Clock
from switchboard.store import Store
from switchboard.store.database import create_engine

TURNS, SESSIONS = 6000, 1200


def _fill(path: str) -> None:
    """Sessions, mostly ended, of five turns each, mostly delivered; two held turns: one in a
    live session, one in a paused one."""
    start = datetime(2026, 11, 1)
    states = ["ended"] * 9 + ["live"]
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(
            "INSERT INTO sessions (id, agent, scope_key, state, source, user_id, user_name,"
            " started_at, last_activity_at, turn_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(f"ses_{n:05}", "echo", f"slack:acme:C{n}",
              "paused" if n == 1 else states[n % 10], "slack", f"U{n}", "Ann",
              str(start + timedelta(minutes=n)), str(start + timedelta(minutes=n)), 5)
             for n in range(SESSIONS)])
        connection.executemany(
            "INSERT INTO turns (id, provider, account, event_id, conversation, kind, message_id,"
            " sender, sender_name, text, received_at, status, delivery_attempts, session_id)"
            " VALUES (?, 'slack', 'acme', ?, ?, 'channel', ?, 'U1', 'Ann', 'hello', ?, ?, 1, ?)",
            [(f"turn_{n:06}", f"Ev{n}", f"C{n // 5}", str(n), str(start + timedelta(seconds=n)),
              "held" if n in (2, 7) else ["delivered", "ignored", "failed"][n % 3],
              f"ses_{n // 5:05}") for n in range(TURNS)])
        connection.execute("ANALYZE")


def _scans(path: str, statements: list[tuple[str, Any]]) -> list[str]:
    """The steps of the statements' plans that read a whole table (walking an index of it in
    full is a scan too) or list a subquery's every row first (`IN (SELECT …)`)."""
    found = []
    with closing(sqlite3.connect(path)) as connection:
        for statement, params in statements:
            for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params):
                step = row[-1]
                whole = step.startswith("SCAN") and any(f" {t}" in step
                                                        for t in ("turns", "sessions"))
                if whole or step.startswith("LIST SUBQUERY"):
                    found.append(f"{step}: {statement}")
    return found


@pytest.mark.asyncio
async def test_the_sweeps_read_held_turns_and_ended_sessions_through_indexes(
        sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    _fill(path)
    engine = create_engine(sqlite_url)
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, params))

    store = Store(engine, Clock())
    try:
        held = await store.turns.held_sessions()
        expired = await store.interactions.expire_ended()
    finally:
        store.close()
        await engine.dispose()
    # the held turn of the live session is found, once; the paused session's is not
    assert held == ["ses_00000"]
    assert expired == []
    assert len(statements) == 2
    assert _scans(path, statements) == []

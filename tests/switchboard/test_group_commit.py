"""Transactions committed together on SQLite's database thread: one that fails harms no
neighbour (the group is rolled back and each runs again alone), and every other commits once.
Real SQLite file, the store's own Database; nothing mocked."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from switchboard.clock import Clock
from switchboard.models import TurnEvent
from switchboard.store.database import GROUP, Database, create_engine


def _database(url: str) -> Database:
    return Database(create_engine(url), Clock())


def _event(turn: str, name: str) -> Any:
    def work(db: Any) -> str:
        db.connection().execute(insert(TurnEvent.__table__), {
            "turn_id": turn, "at": Clock().now(), "name": name, "detail": {}})
        return name
    return work


def _broken(db: Any) -> None:
    db.connection().execute(insert(TurnEvent.__table__), {"turn_id": "t-bad", "name": "x",
                                                          "at": Clock().now(), "detail": {}})
    raise ValueError("this transaction fails on purpose")


def _violates(db: Any) -> None:  # NOT NULL `at`: the database refuses it
    db.connection().execute(insert(TurnEvent.__table__), {"turn_id": "t-null", "name": "y",
                                                          "at": None, "detail": {}})


def _names(url: str) -> list[str]:
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute(
            "SELECT name FROM turn_events ORDER BY id")]


@pytest.mark.asyncio
async def test_a_failing_transaction_in_a_group_harms_none_of_its_neighbours(
        sqlite_url: str) -> None:
    database = _database(sqlite_url)
    try:
        jobs = [_event("t-ok", f"n{i:02}") for i in range(2 * GROUP)]
        jobs[5], jobs[GROUP + 3] = _broken, _violates
        results = await asyncio.gather(*(database.run_tx(job, group=True) for job in jobs),
                                       return_exceptions=True)
    finally:
        database.close()
        await database.engine.dispose()
    assert isinstance(results[5], ValueError)
    assert isinstance(results[GROUP + 3], IntegrityError)
    expected = [f"n{i:02}" for i in range(2 * GROUP) if i not in (5, GROUP + 3)]
    assert [r for i, r in enumerate(results) if i not in (5, GROUP + 3)] == expected
    assert _names(sqlite_url) == expected  # each once, in order, none of the failed ones


@pytest.mark.asyncio
async def test_grouped_and_single_transactions_keep_their_order(sqlite_url: str) -> None:
    database = _database(sqlite_url)
    try:
        calls = [database.run_tx(_event("t-ok", f"m{i:02}"), group=i % 3 != 0)
                 for i in range(40)]
        await asyncio.gather(*calls)
    finally:
        database.close()
        await database.engine.dispose()
    assert _names(sqlite_url) == [f"m{i:02}" for i in range(40)]

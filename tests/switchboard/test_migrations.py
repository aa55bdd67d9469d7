"""The migrated schema is the schema the models describe, and upgrades from an earlier revision."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from switchboard import db, models  # noqa: F401  (models registers the tables)
from switchboard.store.search import SEARCH_OBJECTS


def test_migrations_build_the_models_schema(database_url: str) -> None:
    engine = sa.create_engine(db.driver_url(database_url, asynchronous=False))  # as upgrade() does
    try:
        with engine.connect() as connection:
            # The full-text indexes of 0015_search have no model (SQLAlchemy has no type for
            # them): they are left out here, and checked by tests/switchboard/test_search.py.
            context = MigrationContext.configure(connection, opts={
                "include_name": lambda name, kind, parent: name not in SEARCH_OBJECTS})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == [], f"models and migrations disagree: {differences}"


def test_upgrade_from_the_first_revision_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "0001")
    with closing(sqlite3.connect(tmp_path / "old.db")) as connection, connection:
        connection.execute(
            "INSERT INTO sessions (id, agent, scope_key, state, source, user_id, user_name,"
            " turn_count, started_at, last_activity_at, transferred_to)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("ses_1", "echo", "slack:a:C1", "ended", "slack", "U1", "Ann", 0,
             "2026-11-01 00:00:00", "2026-11-01 00:00:00", "triage"))
    db.upgrade(url)
    with closing(sqlite3.connect(tmp_path / "old.db")) as connection:
        plan = " ".join(str(row) for row in connection.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE scope_key = ?"
            " AND transferred_to = ? ORDER BY ended_at DESC LIMIT 1", ("slack:a:C1", "triage")))
        kept = [row[0] for row in connection.execute("SELECT id FROM sessions")]
    assert kept == ["ses_1"]
    # Opening a session looks up its scope's transferred sessions through an index, not a scan.
    assert "ix_sessions_transferred" in plan, plan

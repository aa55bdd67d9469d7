"""search: turns found by words of their text, and listings that stay fast at a million turns

Listings page newest first by (received_at, id) with a keyset cursor, so their indexes end in
`id` too; `q=` looks a turn up by its id, its session or its provider event id through an index
each (event ids had none without the account); and the words of each turn's text are indexed:
SQLite FTS5 (`turns_fts`, external content on `turns`, kept in step by triggers), PostgreSQL a
GIN index on `to_tsvector('simple', left(text, 100000))` (a tsvector holds 1 MB). Neither is
in the models (SQLAlchemy has no type for them); `switchboard.store.search.SEARCH_OBJECTS` names
them for the models-vs-migrations check.

`turns_fts` is keyed by the rowid of `turns`: a migration that rebuilds `turns` (a batch
"move and copy") must run `INSERT INTO turns_fts(turns_fts) VALUES ('rebuild')` after it.

Revision ID: 0015_search
Revises: 0014_interactions_more
"""

from alembic import op

revision = "0015_search"
down_revision = "0014_interactions_more"
branch_labels = None
depends_on = None

# (name, new columns, old columns) of the turns and sessions indexes that gain `id`
_KEYSET = [
    ("ix_turns_received", "turns", ["received_at", "id"], ["received_at"]),
    ("ix_turns_status_received", "turns", ["status", "received_at", "id"],
     ["status", "received_at"]),
    ("ix_turns_session_received", "turns", ["session_id", "received_at", "id"],
     ["session_id", "received_at"]),
    ("ix_turns_account_received", "turns", ["account", "received_at", "id"],
     ["account", "received_at"]),
    ("ix_sessions_started", "sessions", ["started_at", "id"], ["started_at"]),
]

# Every listing filter gets an index that ends in the listing's order, so a value with few rows
# (a new agent, a quiet conversation, a provider with no turns) is one index range, not a walk
# of the whole table in time order; `event_id` alone for `q=` (the unique index leads with the
# account).
_ADDED = [
    ("ix_turns_event", "turns", ["event_id"]),
    *((f"ix_turns_{key}_received", "turns", [key, "received_at", "id"])
      for key in ("provider", "agent", "binding", "conversation")),
    *((f"ix_sessions_{key}_started", "sessions", [key, "started_at", "id"])
      for key in ("agent", "state", "account", "source", "tag", "user_id")),
]

SQLITE_UP = [
    "CREATE VIRTUAL TABLE turns_fts USING fts5(text, content='turns', content_rowid='rowid',"
    " tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO turns_fts(turns_fts) VALUES ('rebuild')",
    "CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns BEGIN"
    " INSERT INTO turns_fts(rowid, text) VALUES (new.rowid, new.text); END",
    "CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns BEGIN"
    " INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.rowid, old.text); END",
    "CREATE TRIGGER turns_fts_update AFTER UPDATE OF text ON turns BEGIN"
    " INSERT INTO turns_fts(turns_fts, rowid, text) VALUES ('delete', old.rowid, old.text);"
    " INSERT INTO turns_fts(rowid, text) VALUES (new.rowid, new.text); END",
    # Statistics for the new indexes, so the planner picks them at once (a sample: quick).
    "PRAGMA analysis_limit=1000", "ANALYZE turns", "ANALYZE sessions",
]
SQLITE_DOWN = ["DROP TRIGGER turns_fts_update", "DROP TRIGGER turns_fts_delete",
               "DROP TRIGGER turns_fts_insert", "DROP TABLE turns_fts"]
# At most the first 100,000 characters: a tsvector holds 1 MB, and a longer text of distinct
# words (a log pasted into a mail) would fail the turn's INSERT (store/search.py says the same).
POSTGRES_UP = ["CREATE INDEX ix_turns_text_search ON turns USING gin "
               "(to_tsvector('simple', left(text, 100000)))",
               # The words' frequencies (statistics of the expression): with them the planner
               # walks the newest turns for a common word and reads the index for a rare one.
               "ANALYZE turns", "ANALYZE sessions"]
POSTGRES_DOWN = ["DROP INDEX ix_turns_text_search"]


def upgrade() -> None:
    for name, table, columns, _ in _KEYSET:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
    for name, table, columns in _ADDED:
        op.create_index(name, table, columns)
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else POSTGRES_DOWN:
        op.execute(statement)
    for name, table, _ in _ADDED:
        op.drop_index(name, table_name=table)
    for name, table, _, columns in _KEYSET:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)

"""search: turns found by words of their text, and sessions by their person

The words of each turn's text are indexed: SQLite FTS5 `turns_fts` (external content on
`turns`, keyed by its rowid), filled here once and then a batch at a time by
`store/text_index.py` off the acknowledged path, up to the mark in `turns_fts_mark`;
PostgreSQL a GIN index on `to_tsvector('simple', left(text, 100000))` (a tsvector holds 1 MB).
Neither is in the models (SQLAlchemy has no type for them);
`switchboard.store.search.SEARCH_OBJECTS` names them for the models-vs-migrations check.
`turns` gets no other index (each costs the write path): its thread index ends in
received_at instead (a conversation's newest page is found in it); sessions get one on
(user_id, started_at).

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

SQLITE_UP = [
    "CREATE VIRTUAL TABLE turns_fts USING fts5(text, content='turns', content_rowid='rowid',"
    " tokenize='unicode61 remove_diacritics 2')",
    "CREATE TABLE turns_fts_mark (last_rowid INTEGER NOT NULL)",
    "INSERT INTO turns_fts(rowid, text) SELECT rowid, text FROM turns",
    "INSERT INTO turns_fts_mark (last_rowid) SELECT coalesce(max(rowid), 0) FROM turns",
    # Statistics for the rebuilt and new indexes (a sample: quick): beside the old ones' alone,
    # the planner would take the thread index for an account's newest turns and sort them all.
    "PRAGMA analysis_limit=1000", "ANALYZE turns", "ANALYZE sessions",
]
SQLITE_DOWN = ["DROP TABLE turns_fts_mark", "DROP TABLE turns_fts"]
# At most the first 100,000 characters: a tsvector holds 1 MB, and a longer text of distinct
# words (a log pasted into a mail) would fail the turn's INSERT (store/search.py says the same).
POSTGRES_UP = ["CREATE INDEX ix_turns_text_search ON turns USING gin "
               "(to_tsvector('simple', left(text, 100000)))",
               # The words' frequencies (statistics of the expression): with them the planner
               # walks the newest turns for a common word and reads the index for a rare one.
               "ANALYZE turns", "ANALYZE sessions"]
POSTGRES_DOWN = ["DROP INDEX ix_turns_text_search"]


def upgrade() -> None:
    # the thread index ends in received_at: a conversation's newest page from the index alone
    op.drop_index("ix_turns_thread", table_name="turns")
    op.create_index("ix_turns_thread", "turns", ["account", "conversation", "thread",
                                                 "received_at"])
    op.create_index("ix_sessions_user_started", "sessions", ["user_id", "started_at"])
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else POSTGRES_DOWN:
        op.execute(statement)
    op.drop_index("ix_sessions_user_started", table_name="sessions")
    op.drop_index("ix_turns_thread", table_name="turns")
    op.create_index("ix_turns_thread", "turns", ["account", "conversation", "thread"])

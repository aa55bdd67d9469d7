"""Alembic environment: the URL comes from switchboard.db, the schema from switchboard.models."""

from alembic import context
from sqlalchemy import create_engine, event
from sqlmodel import SQLModel

import switchboard.models  # noqa: F401  (registers the tables)

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
if url.startswith("sqlite"):
    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=SQLModel.metadata,
                      render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

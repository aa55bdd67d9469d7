"""SQLite's word index of turns, filled off the acknowledged path.

Why: an FTS5 trigger on `turns` ran inside every transaction that records webhook turns, and a
commit of a few rows into FTS5 writes a new segment and merges them; with it the acknowledgement
benchmark fell from 1,525 to 993 acks/s (bench/README.md). Instead, every INTERVAL seconds (at
once again while a batch comes back full) one WORK transaction on the database thread copies
the text of the turns recorded since the last batch into `turns_fts`, one INSERT … SELECT, and
moves the mark (`turns_fts_mark`: the highest rowid of `turns` indexed; turns' rowids grow in
the order they are committed, and turns are never deleted nor their text changed). A search
may therefore miss the turns of the last second or so. PostgreSQL needs none of this: its GIN
index on the table's text takes inserts into a pending list.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlmodel import Session

from switchboard.store.database import Database

log = logging.getLogger(__name__)

INTERVAL = 0.5  # seconds between batches while there is little to index
BATCH = 5000  # turns at most per batch (one transaction, a few ms of the database thread)

_MARK = sa.text("SELECT last_rowid FROM turns_fts_mark")
_UPTO = sa.text("SELECT max(rowid) FROM (SELECT rowid FROM turns WHERE rowid > :mark"
                " ORDER BY rowid LIMIT :batch)")
_COPY = sa.text("INSERT INTO turns_fts(rowid, text) SELECT rowid, text FROM turns"
                " WHERE rowid > :mark AND rowid <= :upto")
_MOVE = sa.text("UPDATE turns_fts_mark SET last_rowid = :upto")


class TextIndex:
    """Copies new turns' text into SQLite's `turns_fts`, a batch at a time (nothing on
    PostgreSQL)."""

    def __init__(self, db: Database, interval: float = INTERVAL, batch: int = BATCH) -> None:
        self.db = db
        self.interval = interval
        self.batch = batch

    async def catch_up(self) -> int:
        """Index one batch of the turns not indexed yet; how many there were."""
        if not self.db.is_sqlite:
            return 0
        return await self.db.run_tx(self._copy)

    def _copy(self, db: Session) -> int:
        mark = db.execute(_MARK).scalar_one()
        upto = db.execute(_UPTO, {"mark": mark, "batch": self.batch}).scalar()
        if upto is None:
            return 0
        copied = db.execute(_COPY, {"mark": mark, "upto": upto}).rowcount
        db.execute(_MOVE, {"upto": upto})
        return int(copied)

    async def run(self) -> None:
        """Keep the index within about INTERVAL of the newest turn, until cancelled."""
        while self.db.is_sqlite:
            try:
                full = await self.catch_up() >= self.batch
            except Exception:
                log.exception("indexing the words of new turns failed; trying again")
                full = False
            if not full:
                await asyncio.sleep(self.interval)

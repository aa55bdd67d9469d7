"""Listing and searching turns at a million rows: the statements behind `store.turns.page`.

- A listing pages newest first by (received_at, id) with a keyset cursor (a row-value
  comparison each index ending in `id` serves), never OFFSET or COUNT, and without the
  provider's payload (only one turn's page shows it).
- `q=` is an exact turn id, session id or provider event id (one indexed equality each) or
  words of the message text, all of them (SQLite FTS5 `turns_fts`; PostgreSQL the GIN index on
  `to_tsvector('simple', left(text, 100000))`: a tsvector holds at most 1 MB, so on PostgreSQL
  only a text's first 100,000 characters are searched; both made by migration 0015_search).
  On SQLite the words'
  matches come in the order turns were recorded (the FTS rowid, read backwards, so a common
  word stops after one page instead of sorting every match); turns are recorded in the order
  they are received, so that is newest first too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from switchboard.models import Turn

turns: Any = Turn.__table__
LISTED = [column for column in turns.c if column.name != "payload"]
TURN_FILTERS = ("status", "provider", "account", "agent", "session_id", "binding", "conversation")
SEARCH_OBJECTS = frozenset({"turns_fts", "turns_fts_data", "turns_fts_idx", "turns_fts_docsize",
                            "turns_fts_config", "ix_turns_text_search"})
"""What migration 0015_search makes outside the models (for the models-vs-migrations check)."""

_FTS: Any = sa.table("turns_fts", sa.column("rowid"))
_ROWID = sa.literal_column("turns.rowid")
_NEWEST = (turns.c.received_at.desc(), turns.c.id.desc())


def conditions(filters: Mapping[str, Any]) -> list[Any]:
    """The WHERE terms of a listing's filters (duplicates only when asked for)."""
    where = [turns.c[key] == filters[key] for key in TURN_FILTERS if filters.get(key)]
    if filters.get("agents") is not None:  # an operator limited to these agents
        where.append(turns.c.agent.in_(filters["agents"]))
    if filters.get("status") != "duplicate":
        where.append(turns.c.status != "duplicate")
    return where


def words(search: str) -> list[str]:
    """The words of a search, as both full-text indexes split text into words."""
    return re.findall(r"\w+", search.lower())[:32]


async def page_rows(db: AsyncSession, *, sqlite: bool, where: list[Any],
                    after: tuple[datetime, str] | None, limit: int,
                    search: str | None) -> list[Any]:
    """Up to `limit` rows, newest first (Core rows with every column but `payload`)."""
    run = (await db.connection()).execute
    keyset = [] if after is None else [sa.tuple_(turns.c.received_at, turns.c.id) < after]
    if not search:
        query = sa.select(*LISTED).where(*where, *keyset).order_by(*_NEWEST).limit(limit)
        return list((await run(query)).all())
    found: dict[str, Any] = {}
    # An event's turns (the original and its retries) by their ids: asked with the filters and
    # the order at once, SQLite (without statistics) walks the status index in order instead.
    events = sa.select(turns.c.id).where(turns.c.event_id == search).limit(limit)
    event_turns = list((await run(events)).scalars())
    session = sa.select(*LISTED).where(turns.c.session_id == search, *where, *keyset)
    for query in (sa.select(*LISTED).where(turns.c.id.in_([search, *event_turns]), *where,
                                           *keyset),  # primary key lookups
                  session.order_by(*_NEWEST).limit(limit)):  # a session may have many turns
        found.update((row.id, row) for row in (await run(query)).all())
    if terms := words(search):
        text_query = _text_query(sqlite, terms, where, after, limit)
        found.update((row.id, row) for row in (await run(text_query)).all())
    rows = sorted(found.values(), key=lambda row: (row.received_at, row.id), reverse=True)
    return rows[:limit]


def _text_query(sqlite: bool, terms: list[str], where: list[Any],
                after: tuple[datetime, str] | None, limit: int) -> Any:
    if sqlite:
        match = " ".join('"' + term.replace('"', '""') + '"' for term in terms)
        query = (sa.select(*LISTED).select_from(_FTS.join(turns, _FTS.c.rowid == _ROWID))
                 .where(sa.text("turns_fts MATCH :match").bindparams(match=match), *where))
        if after is not None:
            cursor = turns.alias("cursor_turn")
            query = query.where(_FTS.c.rowid < sa.select(sa.literal_column("cursor_turn.rowid"))
                                .where(cursor.c.id == after[1]).scalar_subquery())
        return query.order_by(_FTS.c.rowid.desc()).limit(limit)
    # The expression must be the index's own, with its configuration as a literal.
    query = sa.select(*LISTED).where(
        sa.text("to_tsvector('simple', left(turns.text, 100000)) @@ "
                "plainto_tsquery('simple', :words)")
        .bindparams(words=" ".join(terms)), *where)
    if after is not None:
        query = query.where(sa.tuple_(turns.c.received_at, turns.c.id) < after)
    return query.order_by(*_NEWEST).limit(limit)

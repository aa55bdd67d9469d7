"""Listing and searching turns at a million rows: the statements behind `store.turns.page`.

Every answer is read through an index `turns` already had, so the write path pays nothing for
it (bench/README.md, "queries.py", has the figures):

- A listing pages newest first by (received_at, id) with a keyset cursor written as a range of
  `received_at` (`received_at <= t AND (received_at < t OR id < i)`), never OFFSET or COUNT,
  and without the provider's payload (only one turn's page shows it).
- `provider=` and `conversation=` are asked once per account (a handful, found by a skip scan
  of the account index): a provider is its accounts, each a range of (account, received_at);
  a conversation is (account, conversation) of the thread index when it has few turns, else
  the account's turns in time order. The pages are merged.
- `q=` is an exact turn id (primary key), session id (the session index) or provider event id
  (the unique (account, event_id) index, per account), or words of the message text, all of
  them: SQLite FTS5 `turns_fts`, filled a batch at a time by `store/text_index.py` (so it lags
  the newest turns by about a second), read backwards by rowid (turns are recorded in the order
  they are received, so that is newest first and a common word stops after one page);
  PostgreSQL the GIN index on `to_tsvector('simple', left(text, 100000))` (a tsvector holds at
  most 1 MB, so only a text's first 100,000 characters are searched). Both made by migration
  0015_search.
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
                            "turns_fts_config", "turns_fts_mark", "ix_turns_text_search"})
"""What migration 0015_search makes outside the models (for the models-vs-migrations check)."""

FEW = 5000  # a conversation with fewer turns in an account is read by the thread index
_FTS: Any = sa.table("turns_fts", sa.column("rowid"))
_ROWID = sa.literal_column("turns.rowid")
_NEWEST = (turns.c.received_at.desc(), turns.c.id.desc())
# A literal, as the unique indexes' own WHERE: SQLite reads a partial index only for a query
# whose terms include the index's terms as written.
NOT_DUPLICATE = sa.text("turns.status != 'duplicate'")
_SKIP_SCAN = ("WITH RECURSIVE a(name) AS (SELECT min(account) FROM turns UNION ALL"
              " SELECT (SELECT min(account) FROM turns WHERE account > a.name) FROM a"
              " WHERE a.name IS NOT NULL)")
_ACCOUNTS = sa.text(f"{_SKIP_SCAN} SELECT name FROM a WHERE name IS NOT NULL")
# Each account with how many turns the conversation has in it, up to FEW (the thread index
# alone), in one statement: one round trip, not one per account (PostgreSQL: 2 ms each).
_IN_ACCOUNTS = sa.text(
    f"{_SKIP_SCAN} SELECT name, (SELECT count(*) FROM (SELECT 1 FROM turns"
    " WHERE turns.account = a.name AND turns.conversation = :conversation LIMIT :few) AS x)"
    " FROM a WHERE name IS NOT NULL")


def conditions(filters: Mapping[str, Any]) -> list[Any]:
    """The WHERE terms of a listing's filters but provider and conversation (asked per
    account: `page_rows`); duplicates only when asked for."""
    where = [turns.c[key] == filters[key] for key in TURN_FILTERS
             if filters.get(key) and key not in ("provider", "conversation")]
    if filters.get("agents") is not None:  # an operator limited to these agents
        where.append(turns.c.agent.in_(filters["agents"]))
    if filters.get("status") != "duplicate":
        where.append(NOT_DUPLICATE)
    return where


def words(search: str) -> list[str]:
    """The words of a search, as both full-text indexes split text into words."""
    return re.findall(r"\w+", search.lower())[:32]


def _before(after: tuple[datetime, str] | None) -> list[Any]:
    """The keyset cursor as a range of received_at, which each listing index serves."""
    if after is None:
        return []
    at, ident = after
    return [turns.c.received_at <= at,
            sa.or_(turns.c.received_at < at, turns.c.id < ident)]


class _Reader:
    def __init__(self, db: AsyncSession) -> None:
        self.db = db

    async def rows(self, query: Any) -> list[Any]:
        return list((await (await self.db.connection()).execute(query)).all())

    async def accounts(self) -> list[str]:
        return [row[0] for row in await self.rows(_ACCOUNTS)]

    async def provider_of(self, account: str) -> str | None:
        query = sa.select(turns.c.provider).where(turns.c.account == account).limit(1)
        found = await self.rows(query)
        return found[0][0] if found else None

    async def turns_in(self, conversation: str) -> dict[str, int]:
        """Every account, with how many turns the conversation has in it, up to FEW."""
        found = await self.rows(_IN_ACCOUNTS.bindparams(conversation=conversation, few=FEW))
        return {account: int(count) for account, count in found}


def _newest(where: list[Any], limit: int) -> Any:
    return sa.select(*LISTED).where(*where).order_by(*_NEWEST).limit(limit)


async def page_rows(db: AsyncSession, *, sqlite: bool, filters: Mapping[str, Any],
                    after: tuple[datetime, str] | None, limit: int,
                    search: str | None) -> list[Any]:
    """Up to `limit` rows, newest first (Core rows with every column but `payload`)."""
    read = _Reader(db)
    where = conditions(filters)
    if search:
        return await _searched(read, sqlite, filters, where, after, limit, search)
    provider, conversation = filters.get("provider"), filters.get("conversation")
    if not provider and not conversation:
        return await read.rows(_newest([*where, *_before(after)], limit))
    found: list[Any] = []
    counts = await read.turns_in(conversation) if conversation else None
    for account in counts if counts is not None else await read.accounts():
        if filters.get("account") and account != filters["account"]:
            continue
        if provider and await read.provider_of(account) != provider:
            continue
        mine = [*where, turns.c.account == account, *_before(after)]
        many = counts[account] if counts is not None else FEW
        if many == 0:
            continue
        if many < FEW:
            mine.append(turns.c.conversation == conversation)
            found.extend(await _conversation(read, mine, account, conversation, after, limit))
            continue
        if conversation:  # `|| ''` keeps the planner off the thread index: a walk in time
            mine.append(turns.c.conversation.concat(sa.literal_column("''")) == conversation)
        found.extend(await read.rows(_newest(mine, limit)))
    return _merged(found, limit)


async def _conversation(read: _Reader, where: list[Any], account: str, conversation: str,
                        after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    """A conversation's newest turns in an account, through the thread index: its 2×`limit`-th
    newest received_at, read from the index alone (it ends in received_at), bounds the rows
    read and sorted (twice the page: other filters, duplicates, leave some out); when that is
    still too few, all of them."""
    upto = [turns.c.received_at <= after[0]] if after else []
    nth = (sa.select(turns.c.received_at)
           .where(turns.c.account == account, turns.c.conversation == conversation, *upto)
           .order_by(turns.c.received_at.desc()).limit(1).offset(2 * limit - 1))
    if found := await read.rows(nth):
        rows = await read.rows(_newest([*where, turns.c.received_at >= found[0][0]], limit))
        if len(rows) >= limit:
            return rows
    return await read.rows(_newest(where, limit))


def _merged(rows: list[Any], limit: int) -> list[Any]:
    unique = {row.id: row for row in rows}
    return sorted(unique.values(), key=lambda row: (row.received_at, row.id), reverse=True)[:limit]


async def _searched(read: _Reader, sqlite: bool, filters: Mapping[str, Any], where: list[Any],
                    after: tuple[datetime, str] | None, limit: int, search: str) -> list[Any]:
    """An exact id of a turn, a session or an event, or words of the text, newest first."""
    listed = [*where, *_before(after)]
    if filters.get("provider"):
        listed.append(turns.c.provider == filters["provider"])
    if filters.get("conversation"):
        listed.append(turns.c.conversation == filters["conversation"])
    found = await read.rows(sa.select(*LISTED).where(turns.c.id == search, *listed))
    found += await read.rows(_newest([turns.c.session_id == search, *listed], limit))
    # An event's original turn, through the unique (account, event_id) index of each account;
    # its retries (status=duplicate) are not in that index: the status index holds them.
    if filters.get("status") == "duplicate":
        found += await read.rows(_newest([turns.c.event_id == search, *listed], limit))
    else:
        accounts = await read.accounts()
        found += await read.rows(sa.select(*LISTED).where(
            turns.c.account.in_(accounts), turns.c.event_id == search, *listed))
    if terms := words(search):
        found += await read.rows(_text_query(sqlite, terms, listed, after, limit))
    return _merged(found, limit)


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
    return query.order_by(*_NEWEST).limit(limit)

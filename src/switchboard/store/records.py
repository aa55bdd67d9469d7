"""What the store hands back: frozen values, one type per kind of row, with times in UTC.

Nothing outside the store sees an ORM row. The JSON the API and `--json` show is made from
these in one place, `switchboard/views.py`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any, Generic, TypeVar

from switchboard.errors import BadCursor

R = TypeVar("R")


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    value = aware(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def encode_cursor(at: datetime, ident: str) -> str:
    return base64.urlsafe_b64encode(f"{iso(at)}|{ident}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises BadCursor on a cursor we did not make."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, _, ident = base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
        if not ident:
            raise ValueError("no id")
        return datetime.fromisoformat(at.replace("Z", "+00:00")), ident
    except ValueError:  # (bad base64 and bad UTF-8 are ValueErrors too)
        raise BadCursor("cursor is not one this API gave out") from None


@cache
def _shape(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names = tuple(f.name for f in fields(cls))
    times = tuple(f.name for f in fields(cls) if "datetime" in str(f.type))
    return names, times


def load(cls: type[R], row: Any) -> R:
    """A record from an ORM object or a Core row with the same attribute names."""
    names, times = _shape(cls)
    values = {name: getattr(row, name) for name in names}
    for name in times:
        values[name] = aware(values[name])
    return cls(**values)


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    """One page of a listing, newest first, and the cursor of the next (None at the end)."""

    items: list[R]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One channel turn as recorded."""

    id: str
    provider: str
    account: str
    event_id: str
    dedupe_key: str | None
    conversation: str
    kind: str
    thread: str | None
    message_id: str
    sender: str
    sender_name: str
    text: str
    received_at: datetime
    status: str
    route_reason: str | None
    binding: str | None
    agent: str | None
    session_id: str | None
    reply_text: str | None
    delivery_status: str | None
    delivery_attempts: int
    provider_message_id: str | None
    error: str | None
    duplicate_of: str | None
    owner: str | None
    agent_ms: int | None
    payload: dict[str, Any]
    extra: dict[str, Any]
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One step of a turn's timeline."""

    at: datetime
    name: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TurnStory:
    """A turn with its whole timeline (`GET /api/turns/{id}`, `turns show`)."""

    turn: TurnRecord
    events: tuple[TimelineEvent, ...]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session as recorded."""

    id: str
    agent: str
    account: str | None
    provider: str | None
    binding: str | None
    scope_key: str
    state: str
    source: str
    tag: str | None
    user_id: str
    user_name: str
    started_at: datetime
    last_activity_at: datetime
    ended_at: datetime | None
    end_cause: str | None
    parent_session_id: str | None
    transferred_to: str | None
    model_override: str | None
    turn_count: int
    context: dict[str, Any]
    taken_over_by: str | None = None  # paused for people (takeover.py)
    handoff_reason: str | None = None
    handoff_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One line of a session's transcript: a user message, a reply, activity, a system note."""

    id: int
    at: datetime
    role: str
    text: str
    turn_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A reply (or a notice) waiting for delivery, as leased for one attempt."""

    id: int
    turn_id: str
    session_id: str | None
    batch: list[str]
    notice: bool
    provider: str
    account: str
    conversation: str
    thread: str | None
    reply_to: str | None
    text: str
    extra: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    claimed_until: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Inbox:
    """An email address provisioned for an agent on an email account."""

    address: str
    agent: str
    account: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """What the database knows of an account: last traffic, last error, rejected requests."""

    account: str
    last_inbound_at: datetime | None = None
    last_outbound_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    rejected: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredOperator:
    """An operator kept in the database (added, or generated on first start); only the hash
    of its token is kept. `agents` None: every agent."""

    name: str
    role: str
    token_hash: str
    agents: list[str] | None
    created_at: datetime
    rotated_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to which session (deletes, model overrides)."""

    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SharedEvent:
    """A live event another process shared through the database."""

    id: int
    origin: str
    name: str
    data: dict[str, Any]
    at: datetime | None = None

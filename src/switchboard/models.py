"""The tables. Only `store/` queries them; everything else sees the frozen records of
`store/records.py`."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, Text, text
from sqlmodel import Field, SQLModel


def new_id(prefix: str) -> str:
    """Unique ids such as `turn_…` and `ses_…`: milliseconds since the epoch, then random bits.
    They sort by creation, and a busy table's primary key index grows at its end instead of
    at random pages all over it."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(4)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _when(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Turn(SQLModel, table=True):
    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_received", "received_at"),
        Index("ix_turns_status_received", "status", "received_at"),
        Index("ix_turns_session_received", "session_id", "received_at"),
        Index("ix_turns_account_received", "account", "received_at"),
        # ends in received_at: a conversation's newest page is found in the index alone
        Index("ix_turns_thread", "account", "conversation", "thread", "received_at"),
        # One original turn per provider event and per provider message; duplicates are kept
        # beside them (status 'duplicate') so an operator sees every retry.
        Index("uq_turns_event", "account", "event_id", unique=True,
              sqlite_where=text("status != 'duplicate'"),
              postgresql_where=text("status != 'duplicate'")),
        Index("uq_turns_message", "account", "dedupe_key", unique=True,
              sqlite_where=text("status != 'duplicate' AND dedupe_key IS NOT NULL"),
              postgresql_where=text("status != 'duplicate' AND dedupe_key IS NOT NULL")),
        # No index more: each costs every turn's INSERT or its UPDATEs after routing and
        # delivery (store/search.py reads listings through these). The words of `text` are
        # indexed outside the models (migration 0015_search): SQLite FTS5 `turns_fts`, filled
        # in batches off the ack path (store/text_index.py); PostgreSQL a GIN index.
    )

    id: str = Field(primary_key=True)
    provider: str
    account: str
    event_id: str
    dedupe_key: str | None = None
    conversation: str = ""
    kind: str = ""
    thread: str | None = None
    message_id: str = ""
    sender: str = ""
    sender_name: str = ""
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    received_at: datetime = _when(nullable=False)
    status: str = "pending"
    route_reason: str | None = None
    binding: str | None = None
    agent: str | None = None
    session_id: str | None = None
    reply_text: str | None = Field(default=None, sa_column=Column(Text))
    delivery_status: str | None = None
    delivery_attempts: int = 0
    provider_message_id: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    duplicate_of: str | None = None
    owner: str | None = None  # the serve process working on it (see Worker)
    agent_ms: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    delivered_at: datetime | None = _when(nullable=True)  # when the provider took the reply


class TurnEvent(SQLModel, table=True):
    __tablename__ = "turn_events"
    __table_args__ = (Index("ix_turn_events_turn", "turn_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    turn_id: str
    at: datetime = _when(nullable=False)
    name: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Session(SQLModel, table=True):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_scope", "agent", "scope_key", "state"),
        Index("ix_sessions_started", "started_at"),
        # `user=`: a person has a few sessions among a million (set once, never updated)
        Index("ix_sessions_user_started", "user_id", "started_at"),
        Index("ix_sessions_state_activity", "state", "last_activity_at"),
        # Where a new session in a scope came from, when an earlier one was transferred: only
        # transferred sessions are indexed, so opening a session never scans the table.
        Index("ix_sessions_transferred", "scope_key", "transferred_to",
              sqlite_where=text("transferred_to IS NOT NULL"),
              postgresql_where=text("transferred_to IS NOT NULL")),
    )

    id: str = Field(primary_key=True)
    agent: str
    account: str | None = None
    provider: str | None = None
    binding: str | None = None
    scope_key: str
    state: str = "live"
    source: str = "api"
    tag: str | None = None
    user_id: str = ""
    user_name: str = ""
    started_at: datetime = _when(nullable=False)
    last_activity_at: datetime = _when(nullable=False)
    ended_at: datetime | None = _when(nullable=True)
    end_cause: str | None = None
    parent_session_id: str | None = None
    transferred_to: str | None = None
    model_override: str | None = None
    turn_count: int = 0
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # paused for people (takeover.py): the operator who took it over, the agent's handoff
    taken_over_by: str | None = None
    handoff_reason: str | None = Field(default=None, sa_column=Column(Text))
    handoff_at: datetime | None = _when(nullable=True)


class SessionMessage(SQLModel, table=True):
    """One transcript entry: a user message, an agent reply, agent activity or a system note."""

    __tablename__ = "session_messages"
    __table_args__ = (Index("ix_session_messages_session", "session_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    session_id: str
    at: datetime = _when(nullable=False)
    role: str
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    turn_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Outbox(SQLModel, table=True):
    """A reply waiting to be delivered; written in the same transaction as the transcript."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    turn_id: str = Field(unique=True)
    session_id: str | None = None
    batch: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    notice: bool = False
    provider: str
    account: str
    conversation: str
    thread: str | None = None
    reply_to: str | None = None
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime = _when(nullable=False)
    claimed_until: datetime | None = _when(nullable=True)
    created_at: datetime = _when(nullable=False)


class AccountHealth(SQLModel, table=True):
    __tablename__ = "account_health"

    account: str = Field(primary_key=True)
    last_inbound_at: datetime | None = _when(nullable=True)
    last_outbound_at: datetime | None = _when(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    last_error_at: datetime | None = _when(nullable=True)


class RejectedCount(SQLModel, table=True):
    """Webhook requests that never became turns, counted by account and reason."""

    __tablename__ = "rejected_requests"

    account: str = Field(primary_key=True)
    reason: str = Field(primary_key=True)
    count: int = 0
    last_at: datetime | None = _when(nullable=True)


class OperatorToken(SQLModel, table=True):
    """Operators kept in the database (`switchboard operators add`, the API, the admin `serve`
    generated on first start); only the hash of each token is kept."""

    __tablename__ = "operator_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    role: str
    token_hash: str = Field(unique=True)
    created_at: datetime = _when(nullable=False)
    agents: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    rotated_at: datetime | None = _when(nullable=True)


class Cursor(SQLModel, table=True):
    """Small named positions that must survive restarts (a polling offset, an IMAP position)."""

    __tablename__ = "cursors"

    account: str = Field(primary_key=True)
    name: str = Field(primary_key=True)
    value: str


class AuditEntry(SQLModel, table=True):
    """Who did what to which session, for actions that remove or override things."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when(nullable=False)
    actor: str
    action: str
    target: str
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class InboxAddress(SQLModel, table=True):
    """An email address provisioned for an agent on an email account."""

    __tablename__ = "inbox_addresses"

    address: str = Field(primary_key=True)
    agent: str
    account: str
    created_at: datetime = _when(nullable=False)
    revoked_at: datetime | None = _when(nullable=True)


class EmailThread(SQLModel, table=True):
    """Message-IDs seen or sent in an email thread, mapped to the thread's root, so a reply
    finds its session through In-Reply-To and References."""

    __tablename__ = "email_threads"
    __table_args__ = (Index("ix_email_threads_root", "account", "root"),)

    account: str = Field(primary_key=True)
    message_id: str = Field(primary_key=True)
    root: str
    created_at: datetime = _when(nullable=False)


class Worker(SQLModel, table=True):
    """A running `serve` process. A turn whose owner stopped beating is taken over."""

    __tablename__ = "workers"

    id: str = Field(primary_key=True)
    started_at: datetime = _when(nullable=False)
    heartbeat_at: datetime = _when(nullable=False)


class SharedEvent(SQLModel, table=True):
    """A live event for the other processes on this database (a CLI action, another `serve`):
    every `serve` follows this table by id and streams what it did not publish itself."""

    __tablename__ = "live_events"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never handed out twice

    id: int | None = Field(default=None, sa_column=Column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True))
    at: datetime = _when(nullable=False)
    origin: str  # the process that published it
    name: str
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Interaction(SQLModel, table=True):
    """A structured request of an agent to people (an approval, a choice, an answer), waiting
    in its session until the first allowed answer or its expiry (see `switchboard.interactions`).
    `turn_id` is the turn whose reply carried the prompt (its delivered message is the prompt's
    message at the provider); `answer` is what the agent was handed; `settled_at` when one
    process (of those that learn of the decision) took on replacing the prompt's buttons."""

    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_state_created", "state", "created_at"),
        Index("ix_interactions_session", "session_id", "state"),
        Index("ix_interactions_expires", "state", "expires_at"),
    )

    id: str = Field(primary_key=True)
    session_id: str
    agent: str
    turn_id: str
    kind: str
    prompt: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    options: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    responders: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    state: str = "pending"  # pending | answered | expired
    provider: str = ""
    account: str = ""
    conversation: str = ""
    thread: str | None = None
    created_at: datetime = _when(nullable=False)
    expires_at: datetime | None = _when(nullable=True)
    closed_at: datetime | None = _when(nullable=True)
    answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    answer_turn_id: str | None = None
    settled_at: datetime | None = _when(nullable=True)  # the decision shown at the provider


class InteractionAttempt(SQLModel, table=True):
    """Every attempt to answer an interaction, accepted or refused, by whom and from where. At
    most one per interaction is accepted (the first answer wins, enforced by this index)."""

    __tablename__ = "interaction_attempts"
    __table_args__ = (
        Index("ix_interaction_attempts_interaction", "interaction_id", "id"),
        Index("uq_interaction_attempts_accepted", "interaction_id", unique=True,
              sqlite_where=text("accepted"), postgresql_where=text("accepted")),
    )

    id: int | None = Field(default=None, primary_key=True)
    interaction_id: str
    at: datetime = _when(nullable=False)
    via: str
    by_provider: str | None = None
    by_id: str = ""
    by_name: str = ""
    option: str | None = None
    text: str | None = Field(default=None, sa_column=Column(Text))
    accepted: bool = False
    reason: str | None = None
class StoredFile(SQLModel, table=True):
    """A file of a turn: one a person sent (`in`) or one the agent made (`out`). Its bytes are
    a blob of the file store named by `sha256` (shared by every row with the same bytes);
    a skipped or failed file has none. Outbound rows are delivered like the outbox: leased per
    attempt (`claimed_until`), retried at `next_attempt_at`."""

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_turn", "turn_id"),
        Index("ix_files_session", "session_id"),
        Index("ix_files_sha256", "sha256"),
        Index("ix_files_created", "created_at"),
        Index("ix_files_due", "direction", "status", "next_attempt_at"),
    )

    id: str = Field(primary_key=True)
    turn_id: str
    session_id: str | None = None
    provider: str
    account: str
    direction: str  # in | out
    position: int = 0  # order within the turn's files
    name: str
    type: str
    size: int | None = Field(default=None, sa_column=Column(BigInteger))
    sha256: str | None = None
    # in: pending, stored, skipped, failed; out: pending, with_reply, retrying, delivered, failed
    status: str = "pending"
    reason: str | None = Field(default=None, sa_column=Column(Text))
    ref: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    attempts: int = 0
    next_attempt_at: datetime | None = _when(nullable=True)
    claimed_until: datetime | None = _when(nullable=True)
    provider_file_id: str | None = None
    created_at: datetime = _when(nullable=False)


class Pairing(SQLModel, table=True):
    """One sender on one account under `dm_policy: pairing` (or `allowlist`): a pending code,
    a stranger told to wait, or the operator's decision. `reply` says where the person hears
    that they are in (the outbound address of the DM that got the code)."""

    __tablename__ = "pairings"
    __table_args__ = (Index("ix_pairings_code", "code"),
                      Index("ix_pairings_account_status", "account", "status"))

    account: str = Field(primary_key=True)
    sender: str = Field(primary_key=True)
    sender_name: str = ""
    status: str = "pending"  # pending | waiting | approved | denied
    code: str | None = None
    created_at: datetime = _when(nullable=False)
    expires_at: datetime | None = _when(nullable=True)
    notified_at: datetime | None = _when(nullable=True)
    decided_at: datetime | None = _when(nullable=True)
    decided_by: str | None = None
    turn_id: str | None = None  # the latest turn that was told the code
    reply: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class GuardCounter(SQLModel, table=True):
    """A count within a window (a rate limit, a loop guard, wrong pairing codes), shared by
    every process on the database; `blocked_until` is a loop guard's cooldown."""

    __tablename__ = "guard_counters"

    key: str = Field(primary_key=True)
    started_at: datetime = _when(nullable=False)
    count: int = 0
    blocked_until: datetime | None = _when(nullable=True)


class HookDelivery(SQLModel, table=True):
    """One event for one configured webhook (`webhooks:`), written in the transaction of what
    caused it; its `id` is the delivery id the receiver sees on every attempt. Claimed per
    attempt like the outbox (`claimed_until`), retried at `next_attempt_at`, dead after a day."""

    __tablename__ = "hook_deliveries"
    __table_args__ = (Index("ix_hook_deliveries_due", "state", "next_attempt_at"),
                      Index("ix_hook_deliveries_created", "created_at"))

    id: str = Field(primary_key=True)
    url: str
    event: str
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    state: str = "pending"  # pending | retrying | delivered | dead
    attempts: int = 0
    created_at: datetime = _when(nullable=False)
    next_attempt_at: datetime = _when(nullable=False)
    claimed_until: datetime | None = _when(nullable=True)
    delivered_at: datetime | None = _when(nullable=True)


class HookAttempt(SQLModel, table=True):
    """One POST of a hook delivery and the receiver's answer (or why there was none)."""

    __tablename__ = "hook_attempts"
    __table_args__ = (Index("ix_hook_attempts_delivery", "delivery_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str
    at: datetime = _when(nullable=False)
    status: int | None = None  # the receiver's HTTP status; None when it never answered
    body: str | None = Field(default=None, sa_column=Column(Text))  # its first 500 characters
    error: str | None = Field(default=None, sa_column=Column(Text))
    ms: int = 0

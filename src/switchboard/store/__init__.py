"""The only place that talks SQL: one object per aggregate, each returning frozen records.

    store.turns     turns and their timelines (recorded on the acknowledged path)
    store.sessions  sessions, transcripts, state moves and sweeps
    store.outbox    replies waiting for delivery, leased per attempt
    store.inboxes   email inbox addresses and thread roots
    store.accounts  account health and rejected-request counts
    store.cursors   durable positions of an account (a polling offset)
    store.live      live events shared between processes
    store.tokens    operators kept in the database (hashes of their tokens)
    store.audit     what operators did, by name
    store.workers   this process's heartbeat, for recovery by the others
    store.backlog   turns waiting in the database for room in this process's queue
    store.interactions  agents' requests to people and every answer attempt
    store.files     files of turns (their bytes are the file store's) and their deliveries
    store.counters  counts in windows (rate limits, loop guards), shared between processes
    store.pairings  senders paired with an account (dm_policy: pairing)
    store.hooks     outbound webhook deliveries and their attempts (emit: store/hooks.py)
    store.takeovers sessions paused for people: takeovers, operator replies, handoffs
    store.text_index  SQLite's word index of turns, filled in batches off the ack path
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from switchboard.clock import Clock
from switchboard.redact import Redactor
from switchboard.store.accounts import AccountStore, CursorStore
from switchboard.store.backlog import BacklogStore
from switchboard.store.database import Database, create_engine
from switchboard.store.files import FileRecord, FileRows, NewFile
from switchboard.store.guards import Count, CounterStore, PairingRecord, PairingStore
from switchboard.store.hooks import INFO_KEY, HookRecord, HookRoutes, HookStore
from switchboard.store.inboxes import InboxStore
from switchboard.store.interactions import InteractionStore
from switchboard.store.live import LiveEventStore
from switchboard.store.operators import AuditLog, TokenStore, token_hash
from switchboard.store.outbound import OutboundStore
from switchboard.store.outbox import AgentResult, OutboxStore
from switchboard.store.records import (
    AccountHealth,
    AuditRecord,
    Inbox,
    OutboxEntry,
    Page,
    SessionRecord,
    SharedEvent,
    StoredOperator,
    TimelineEvent,
    TranscriptEntry,
    TurnRecord,
    TurnStory,
    aware,
    iso,
)
from switchboard.store.session_moves import Opened, ScopeRequest
from switchboard.store.sessions import SessionStore
from switchboard.store.takeovers import TakeoverStore
from switchboard.store.text_index import TextIndex
from switchboard.store.turns import TurnStore
from switchboard.store.workers import WorkerStore


class Store:
    """Every aggregate of one process, over one engine and one clock. `worker` names this
    `serve` process (it owns the turns it records); `redact` cleans provider error texts."""

    def __init__(self, engine: AsyncEngine, clock: Clock, *, worker: str | None = None,
                 redact: Redactor | None = None) -> None:
        self.hook_routes = HookRoutes(clock)  # which events go to webhooks (store/hooks.py)
        self.db = Database(engine, clock, info={INFO_KEY: self.hook_routes})
        self.clock = clock
        self.turns = TurnStore(self.db, worker)
        self.text_index = TextIndex(self.db)  # SQLite's word index, filled off the ack path
        self.sessions = SessionStore(self.db)
        self.accounts = AccountStore(self.db)
        self.outbox = OutboxStore(self.db, self.accounts, redact or Redactor())
        self.outbound = OutboundStore(self.db)
        self.inboxes = InboxStore(self.db)
        self.cursors = CursorStore(self.db)
        self.live = LiveEventStore(self.db)
        self.tokens = TokenStore(self.db)
        self.audit = AuditLog(self.db)
        self.workers = WorkerStore(self.db, worker)
        self.backlog = BacklogStore(self.db, worker)
        self.interactions = InteractionStore(self.db, worker)
        self.files = FileRows(self.db)
        self.counters = CounterStore(self.db)
        self.pairings = PairingStore(self.db)
        self.hooks = HookStore(self.db)
        self.takeovers = TakeoverStore(self.db, self.outbox)

    def close(self) -> None:
        """Stop the database threads; the caller disposes of the engine."""
        self.db.close()


__all__ = [
    "AccountHealth", "AgentResult", "AuditRecord", "Count", "FileRecord", "HookRecord", "Inbox",
    "NewFile",
    "Opened", "OutboxEntry", "Page", "PairingRecord", "ScopeRequest", "SessionRecord",
    "SharedEvent", "Store",
    "StoredOperator", "TimelineEvent", "TranscriptEntry", "TurnRecord", "TurnStory", "aware",
    "create_engine", "iso", "token_hash",
]

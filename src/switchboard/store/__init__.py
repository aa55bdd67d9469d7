"""The only place that talks SQL. Domain code calls these methods with plain values."""

from switchboard.store.accounts import AccountQueries, token_hash
from switchboard.store.base import aware, iso
from switchboard.store.inboxes import InboxQueries
from switchboard.store.lifecycle import ActionRefused, LifecycleQueries, SessionNotFound
from switchboard.store.live import SharedEventQueries
from switchboard.store.outbox import AgentResult, OutboxQueries
from switchboard.store.sessions import Opened, ScopeRequest, session_dict
from switchboard.store.turns import Recorded, TurnQueries, turn_dict


class Store(TurnQueries, LifecycleQueries, OutboxQueries, InboxQueries, AccountQueries,
            SharedEventQueries):
    """All queries of one process, over one engine and one clock."""


__all__ = [
    "ActionRefused",
    "AgentResult",
    "Opened",
    "Recorded",
    "ScopeRequest",
    "SessionNotFound",
    "Store",
    "aware",
    "iso",
    "session_dict",
    "token_hash",
    "turn_dict",
]

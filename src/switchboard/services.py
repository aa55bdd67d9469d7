"""What this application offers provider adapters: `channels.adapter.Services` (record a
message, run a chat command, keep a cursor, report an account's health) and the email
provider's `inbox.provider.MailDirectory` (inboxes and mail threads), over the pipeline and
the store. Adapters never see either of those themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from channels.adapter import Recorded
from channels.files import FileStore
from channels.interactions import AnswerAttempt, Verdict
from channels.messages import InboundMessage
from channels.rules import NoMatch, match
from inbox.provider import Inbox
from sessions import scope_key
from sessions.events import EventHub
from switchboard.config import Config
from switchboard.controls import CHAT_COMMANDS, SessionControls
from switchboard.errors import AddressTaken
from switchboard.metrics import Metrics
from switchboard.pipeline import Pipeline
from switchboard.redact import AccountErrors
from switchboard.store import Store


class AppServices:
    """One per process; every adapter of every account gets it at `open`."""

    def __init__(self, *, config: Config, store: Store, pipeline: Pipeline,
                 controls: SessionControls, events: EventHub, metrics: Metrics,
                 account_errors: AccountErrors,
                 listen: Mapping[str, tuple[str, int]] | None = None,
                 files: FileStore | None = None) -> None:
        self.config = config
        self.store = store
        self.pipeline = pipeline
        self.controls = controls
        self.events = events
        self.metrics = metrics
        self.account_errors = account_errors
        self.listen = dict(listen or {})
        if files is not None:
            self.files = files  # `Services.files`: adapters keep and read file bytes here

    # --- Services ----------------------------------------------------------------------------

    async def record(self, message: InboundMessage,
                     extra: Mapping[str, Any] | None = None) -> Recorded:
        recorded = await self.pipeline.receive(message, dict(extra) if extra else None)
        return Recorded(recorded.turn_id, recorded.duplicate_of)

    async def command(self, message: InboundMessage, command: str, args: str = "", *,
                      invoked_as: str = "/") -> str:
        """`new`, `end`, `pause`, `resume`, `agents`, `transfer NAME` for the person's own
        session in the conversation of `message`, under the binding that would answer it
        there."""
        if command not in CHAT_COMMANDS:
            usage = [f"{invoked_as}{known}" + (" NAME" if known == "transfer" else "")
                     for known in CHAT_COMMANDS]
            return "Usage: " + " | ".join(usage)
        decision = match(message, self.config.bindings)
        if isinstance(decision, NoMatch):
            return f"No agent answers here: {decision.reason}"
        binding = decision.binding
        thread_scope = binding.session_scope == "thread"
        scope = scope_key(binding.session_scope, account=message.account,
                          conversation=message.conversation, thread=None,
                          sender=message.sender)
        agent = binding.agent
        if thread_scope:  # any thread of the conversation: the person's sessions there
            scope = scope.removesuffix("-")
        elif transfer := await self.store.sessions.transfer_target(agent, scope):
            agent = transfer[0]  # the scope was moved to another agent (`/transfer`)
        return await self.controls.user_command(command, agent=agent, scope=scope,
                                                user=message.sender, prefix=thread_scope,
                                                args=args, transfer_to=binding.transfer_to,
                                                invoked_as=invoked_as)

    async def answer_interaction(self, attempt: AnswerAttempt) -> Verdict:
        """A person's click on an interaction's button: recorded, and what to tell them."""
        return await self.pipeline.interactions.answer(attempt)

    async def get_cursor(self, account: str, name: str) -> str | None:
        return await self.store.cursors.get(account, name)

    async def set_cursor(self, account: str, name: str, value: str) -> None:
        await self.store.cursors.set(account, name, value)

    def note_rejected(self, account: str, reason: str) -> None:
        """Counted in memory (the runtime writes the counts and logs a summary each interval):
        a flood of forged requests costs microseconds each, not a write and a log line."""
        self.metrics.rejected.labels(account, reason).inc()
        self.store.accounts.count_rejected(account, reason)

    def note_error(self, account: str, error: str | None) -> None:
        if error is None:
            self.account_errors.pop(account, None)
        else:
            self.account_errors[account] = error

    def publish(self, name: str, data: dict[str, Any]) -> None:
        self.events.publish(name, data)

    def listen_address(self, name: str) -> tuple[str, int] | None:
        return self.listen.get(name)

    # --- MailDirectory -----------------------------------------------------------------------

    async def active_inbox(self, address: str, accounts: Iterable[str]) -> Inbox | None:
        row = await self.store.inboxes.active(address, accounts)
        return Inbox(row.address, row.agent, row.account) if row is not None else None

    async def all_inbox_addresses(self) -> set[str]:
        return await self.store.inboxes.all_addresses()

    async def declare_inbox(self, address: str, agent: str, account: str) -> Inbox | None:
        try:
            row = await self.store.inboxes.provision(address, agent, account)
        except AddressTaken:
            return await self.active_inbox(address, [account])
        return Inbox(row.address, row.agent, row.account)

    async def agent_inbox(self, agent: str, account: str) -> Inbox | None:
        for row in await self.store.inboxes.all(include_revoked=False):
            if row.agent == agent and row.account == account:
                return Inbox(row.address, row.agent, row.account)
        return None

    async def thread_root(self, account: str, message_ids: Iterable[str]) -> str | None:
        return await self.store.inboxes.thread_root(account, message_ids)

    async def remember_thread(self, account: str, message_id: str, root: str) -> None:
        await self.store.inboxes.remember_thread(account, message_id, root)


__all__ = ["AppServices"]

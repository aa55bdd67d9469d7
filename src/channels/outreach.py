"""Messages an agent starts: to whom, and how the person's answer will look.

An adapter that can start a conversation implements `OutreachAdapter.outreach`: given a
`Recipient` it says what to deliver (an `OutboundMessage`, with whatever its `deliver` needs in
`extra`) and what the person's reply will look like as an `InboundMessage` (`reply`), so the
application routes the outbound message into the session that reply will join, with the same
binding rules and session scopes as every inbound message. Slack opens the DM here
(`conversations.open`), email chooses the Message-ID the reply will answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from channels.errors import SwitchboardError
from channels.messages import InboundMessage, OutboundMessage


class RecipientRefused(SwitchboardError):
    """The recipient cannot be written to as given (no such user, an address this provider
    does not take); the message says what to give instead."""


@dataclass(frozen=True)
class Recipient:
    """Exactly one of `user`, `conversation` or `email`; `thread` goes with `conversation`,
    `subject` with `email`."""

    user: str | None = None
    conversation: str | None = None
    thread: str | None = None
    email: str | None = None
    subject: str | None = None

    def words(self) -> str:
        """The recipient as an operator wrote it (`user U123`, `conversation C1 thread 1.2`)."""
        if self.user:
            return f"user {self.user}"
        if self.email:
            return f"email {self.email}"
        thread = f" thread {self.thread}" if self.thread else ""
        return f"conversation {self.conversation}{thread}"


@dataclass(frozen=True)
class Outreach:
    """What to deliver, and the shape of the person's answer to it (`reply`: its account,
    conversation, kind, thread and sender as the adapter will record them)."""

    out: OutboundMessage
    reply: InboundMessage


@runtime_checkable
class OutreachAdapter(Protocol):
    """What an adapter adds to start conversations. `agent` is the agent writing (email writes
    from its inbox). Raises `RecipientRefused` for a recipient it cannot take, or
    `DeliveryError` with the provider's words when the provider refuses (no such user)."""

    async def outreach(self, agent: str, to: Recipient, text: str) -> Outreach: ...


__all__ = ["Outreach", "OutreachAdapter", "Recipient", "RecipientRefused"]

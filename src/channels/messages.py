"""The two shapes every provider adapter speaks: one inbound message, one outbound message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ConversationKind = Literal["dm", "group", "channel"]


@dataclass(frozen=True)
class InboundMessage:
    """One message from a provider, reduced to what routing and the pipeline need.

    `thread` is the thread the message was posted in (None for a top-level message);
    `message_id` is the provider's id of the message itself (Slack `ts`, Telegram message_id,
    email Message-ID). `ignore_reason` is set by an adapter for events that must be recorded
    but never answered (the bot's own messages, edits, stickers, auto-replies).
    """

    provider: str
    account: str
    event_id: str
    conversation: str
    kind: ConversationKind
    sender: str
    text: str
    message_id: str = ""
    thread: str | None = None
    mentioned: bool = False
    starts_thread: bool = False
    for_agent: str | None = None  # addressed to one agent (mail to its inbox)
    sender_name: str = ""
    ignore_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def dedupe_key(self) -> str | None:
        """Identity of the message itself, so one message delivered as two events is one turn.

        Messages that are never answered (edits, the bot's own) share no key: an edit keeps
        the id of the message it changes and must not pass for a repeat of it.
        """
        if not self.message_id or self.ignore_reason:
            return None
        return f"{self.conversation}:{self.message_id}"

    @property
    def reply_thread(self) -> str | None:
        """The thread a reply goes to: the message's own thread, or, on providers where a reply
        opens a thread under the message (`starts_thread`, Slack channels), that new one."""
        if self.thread:
            return self.thread
        return self.message_id if self.starts_thread and self.message_id else None


@dataclass(frozen=True)
class OutboundMessage:
    """A reply to deliver: where it goes and what it says."""

    provider: str
    account: str
    conversation: str
    text: str
    thread: str | None = None
    reply_to: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryReceipt:
    """What a provider said when it accepted a reply: its message id, and details worth
    keeping on the turn's timeline (where a mail was written, which relay took it)."""

    provider_message_id: str
    detail: dict[str, Any] = field(default_factory=dict)

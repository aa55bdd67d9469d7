"""The one protocol every provider implements (Slack, Telegram, email, and any added later).

A provider is a module that exposes one `Provider` value: its name, its account settings model
(pydantic; the config loader builds the account union from the registry), the webhook actions it
serves, its declared capabilities, and `open(name, settings, services)`, which builds the
`AccountAdapter` for one configured account. The pipeline and the rest of `switchboard` see only
these shapes; a provider's wire format, its library and its quirks stay inside its module.

What an adapter may need from the application (record a message, keep a cursor, look up a mail
thread, count a rejected request) comes in through `Services`, a small protocol the application
implements, so no provider module imports `switchboard` or talks to the database itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage


class Capability(StrEnum):
    """What a provider can do beyond sending text; features ask for these, never for a name."""

    THREADS = "threads"  # replies go into a thread of the message
    EDIT = "edit"  # a sent message can be changed
    STREAM = "stream"  # an answer can be shown while it is written
    TYPING = "typing"  # a working indicator can be shown
    FILES = "files"  # files can be received and sent
    BUTTONS = "buttons"  # interactive buttons can be sent and clicked


class AccountSettings(BaseModel):
    """Base of every provider's account settings: strict, frozen, `provider` as discriminator.

    `disabled_reason()` says why an account cannot start with these settings (a missing token),
    or None; such an account is listed as disabled instead of failing the whole config.
    `secret_keys` name the fields whose values are redacted everywhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    secret_keys: ClassVar[frozenset[str]] = frozenset()

    def disabled_reason(self) -> str | None:
        return None


# --- what a webhook request becomes ----------------------------------------------------------


@dataclass(frozen=True)
class Turns:
    """The request carries messages to record as turns; acknowledge once they are recorded.
    `extra` is kept on each turn (Slack's retry number and reason)."""

    messages: tuple[InboundMessage, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """The request is answered at once and records no turn (Slack's url_verification
    challenge, a payload type nobody subscribed to, a slash command's reply)."""

    body: Mapping[str, Any]
    status: int = 200


WebhookResult = Turns | Answer
"""What `AccountAdapter.webhook` returns; it raises `RejectedRequest` for what must be refused
(bad signature, stale, malformed), whose `reason` the account-health counters show."""


# --- what the application offers an adapter --------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A message durably recorded as a turn (or as a duplicate of `duplicate_of`)."""

    turn_id: str
    duplicate_of: str | None = None


class Services(Protocol):
    """The application's side of the protocol: what adapters may ask of it.

    `record` stores a message as a turn and hands it to the pipeline (the caller acknowledges
    the provider when it returns); `command` runs a chat/slash command for the person who sent
    it and returns the answer to show them. The rest are small durable lookups some providers
    need: a cursor (Telegram's polling offset, an IMAP position), mail threads, inboxes.
    """

    async def record(self, message: InboundMessage,
                     extra: Mapping[str, Any] | None = None) -> Recorded: ...

    async def command(self, account: str, command: str, args: str, *, conversation: str,
                      sender: str) -> str: ...

    async def get_cursor(self, account: str, name: str) -> str | None: ...

    async def set_cursor(self, account: str, name: str, value: str) -> None: ...

    def note_rejected(self, account: str, reason: str) -> None: ...

    def note_error(self, account: str, error: str | None) -> None:
        """The account's current problem as operators see it (None: it is healthy again)."""
        ...

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """A live event (`email.received`, …) on `/api/events`."""
        ...


# --- one account of a provider ---------------------------------------------------------------


@runtime_checkable
class AccountAdapter(Protocol):
    """One configured account of a provider, running.

    `start` opens clients, learns the bot's identity and starts long-lived inbound (Socket
    Mode, long polling, an SMTP listener); `stop` ends them. `webhook` takes one HTTP request
    (the action from the path, headers, raw bytes), verified by the provider's own scheme.
    `reply_to` says where a reply to `message` goes (a Slack thread, a Telegram quote and
    topic, email threading); `deliver` sends it and returns the provider's receipt or raises
    `DeliveryError(permanent=…, retry_after=…)`.
    """

    name: str
    capabilities: frozenset[Capability]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def webhook(self, action: str, headers: Mapping[str, str],
                      body: bytes) -> WebhookResult: ...

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage: ...

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt: ...


CliCommand = Callable[..., Any]
"""A Typer command function a provider adds under `switchboard <provider> …`."""


@dataclass(frozen=True)
class Provider:
    """A provider as the registry knows it: everything the config loader, the CLI, the console
    and the runtime need, without importing the provider's libraries before it is used."""

    name: str
    settings: type[AccountSettings]
    open: Callable[[str, Any, Services], AccountAdapter]
    capabilities: frozenset[Capability] = frozenset()
    webhook_actions: tuple[str, ...] = ()
    commands: Mapping[str, CliCommand] = field(default_factory=dict)
    description: str = ""

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities


def capability_names(capabilities: Iterable[Capability]) -> list[str]:
    """Capabilities as sorted strings, for the API and the console."""
    return sorted(str(c) for c in capabilities)


__all__ = [
    "AccountAdapter",
    "AccountSettings",
    "Answer",
    "Capability",
    "CliCommand",
    "Provider",
    "Recorded",
    "Services",
    "Turns",
    "WebhookResult",
    "capability_names",
]

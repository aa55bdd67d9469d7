"""The one protocol every provider implements (Slack, Telegram, email, and any added later).

A provider is a module that exposes one `Provider` value: its name, its account settings model
(pydantic; the config loader builds the account union from the registry), the webhook actions it
serves, its declared capabilities, and `open(name, settings, services)`, which builds the
`AccountAdapter` for one configured account. The pipeline and the rest of `switchboard` see only
these shapes; a provider's wire format, its library and its quirks stay inside its module.

What an adapter may need from the application (record a message, keep a cursor, run a chat
command, count a rejected request) comes in through `Services`, a small protocol the application
implements, so no provider module imports `switchboard` or talks to the database itself.
docs/providers.md shows how to write one.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, model_validator

from channels.files import FileLimits, FileStore, OutboundFile
from channels.guards import DmPolicy, LoopGuard, RateLimit
from channels.interactions import AnswerAttempt, Verdict
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
    `secret_keys` name the fields whose values are redacted everywhere. Every account also
    says who may talk to it (`dm_policy`, `rate_limit`, a binding's own setting wins) and how
    many replies another bot may draw from it (`loop_guard`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    files: FileLimits = FileLimits()  # which of a message's files are fetched (`files`)
    dm_policy: DmPolicy = "open"
    rate_limit: RateLimit | None = None
    loop_guard: LoopGuard = LoopGuard()
    secret_keys: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _file_limits_on_the_account(cls, data: Any) -> Any:
        """`max_file_bytes`, `allowed_types` and `max_files_per_message` may also be written
        on the account itself (the limits are per account): they go into its `files`."""
        if not isinstance(data, Mapping):
            return data
        moved = {key: data[key] for key in FileLimits.model_fields if key in data}
        if not moved:
            return data
        files = data.get("files") or {}
        if isinstance(files, FileLimits):
            files = files.model_dump()
        if not isinstance(files, Mapping):
            return data
        both = sorted(set(moved) & set(files))
        if both:
            raise ValueError(f"{both[0]} is set both on the account and under files: "
                             "keep one")
        rest = {key: value for key, value in data.items() if key not in moved}
        return {**rest, "files": {**files, **moved}}

    def disabled_reason(self) -> str | None:
        return None

    def secrets(self) -> set[str]:
        """The values of this account's secret fields that are set."""
        return {str(value) for key in self.secret_keys if (value := getattr(self, key, None))}


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
    the provider when it returns). `command` runs a chat command (`new`, `end`, `pause`,
    `resume`, `agents`, `transfer NAME`) for the person who sent `message` and returns the
    answer to show them; `invoked_as` is how that person calls commands (`/agent ` for a
    slash command), for the usage line. The rest are small durable lookups and reports: a
    cursor (a polling offset, an IMAP position), the account's current problem, a rejected
    request, a live event, and where a provider's own server (an SMTP listener) may listen.
    `files` keeps and reads file bytes (`channels.files`).
    """

    files: FileStore

    async def record(self, message: InboundMessage,
                     extra: Mapping[str, Any] | None = None) -> Recorded: ...

    async def command(self, message: InboundMessage, command: str, args: str = "", *,
                      invoked_as: str = "/") -> str: ...

    async def answer_interaction(self, attempt: AnswerAttempt) -> Verdict:
        """A person's answer to an interaction at the provider (a button clicked): recorded,
        accepted when it is the first allowed one; the verdict says what to show them."""
        ...

    async def get_cursor(self, account: str, name: str) -> str | None: ...

    async def set_cursor(self, account: str, name: str, value: str) -> None: ...

    def note_rejected(self, account: str, reason: str) -> None: ...

    def note_error(self, account: str, error: str | None) -> None:
        """The account's current problem as operators see it (None: it is healthy again)."""
        ...

    def publish(self, name: str, data: dict[str, Any]) -> None:
        """A live event (`email.received`, …) on `/api/events`."""
        ...

    def listen_address(self, name: str) -> tuple[str, int] | None:
        """Where the provider's own server `name` (`smtp`) listens; None: it must not."""
        ...


# --- one account of a provider ---------------------------------------------------------------


@runtime_checkable
class AccountAdapter(Protocol):
    """One configured account of a provider, running.

    `start` opens clients, learns the bot's identity and starts long-lived inbound (Socket
    Mode, long polling); it raises `StartFailed` when the account cannot run at all. `stop`
    ends them. `webhook` takes one HTTP request (the action from the path, headers, raw bytes),
    verified by the provider's own scheme. `reply_to` says where a reply to `message` goes (a
    Slack thread, a Telegram quote and topic, email threading); `deliver` sends it and returns
    the provider's receipt or raises `DeliveryError(permanent=…, retry_after=…)`.
    """

    name: str
    capabilities: frozenset[Capability]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def webhook(self, action: str, headers: Mapping[str, str],
                      body: bytes) -> WebhookResult: ...

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage: ...

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt: ...


class FileAdapter(Protocol):
    """What an adapter declaring `Capability.FILES` adds (see `channels.files`).

    `open_file` streams one inbound file named by the `ref` the adapter put on the message,
    raising `FileFetchError`; `deliver_file` sends one of the agent's files where `out` goes,
    returning the provider's file id or raising `DeliveryError`. An adapter whose files travel
    inside the reply itself (a mail's attachments) sets `files_in_reply` and reads them from
    `out.extra["files"]` in `deliver` instead.
    """

    files_in_reply: bool

    def open_file(self, ref: Mapping[str, Any]) -> AsyncIterator[bytes]: ...

    async def deliver_file(self, out: OutboundMessage, file: OutboundFile) -> DeliveryReceipt: ...


def reply_in_thread(message: InboundMessage, text: str, *, quote: bool = True,
                    extra: Mapping[str, Any] | None = None) -> OutboundMessage:
    """The common reply: into the message's own thread, quoting it (`quote`). Adapters build
    theirs from it; the pipeline uses it for an account that is not running (the delivery
    then fails with the reason)."""
    return OutboundMessage(provider=message.provider, account=message.account,
                           conversation=message.conversation, text=text, thread=message.thread,
                           reply_to=message.message_id if quote else None,
                           extra=dict(extra or {}))


class Listener(Protocol):
    """Long-lived inbound shared by all accounts of one provider (one SMTP server for every
    email account), started after its accounts and stopped before them."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# --- what the registry knows of a provider ---------------------------------------------------


@dataclass(frozen=True)
class CommandOption:
    """One `--name VALUE` option of a provider's CLI command (required without a default)."""

    name: str
    help: str
    default: str | None = None


@dataclass(frozen=True)
class AccountCommand:
    """`switchboard <provider> <command> ACCOUNT [--option VALUE]…`, a set-up step for one
    account (`telegram set-webhook`). `run(account, settings, **options)` returns the line to
    print, or raises `CommandFailed` with what went wrong."""

    run: Callable[..., Awaitable[str]]
    help: str
    options: tuple[CommandOption, ...] = ()


@dataclass(frozen=True)
class ConfigIssue:
    """A problem a provider finds in the config: `at` is the path of the line to point at,
    `key` the dotted key to name (`at` when None)."""

    at: tuple[Any, ...]
    message: str
    key: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class ConfigSection:
    """A top-level section of bindings.yaml a provider owns (email's `smtp:`). `check` sees the
    raw section and the raw settings of the provider's accounts, before validation, so what it
    finds is reported beside type errors."""

    key: str
    model: type[BaseModel]
    check: Callable[[Mapping[str, Any], Mapping[str, Mapping[str, Any]]],
                    list[ConfigIssue]] | None = None


@dataclass(frozen=True)
class SecretPattern:
    """Text shaped like a secret of this provider wherever it appears (Telegram's bot token in
    every Bot API URL): `pattern` is replaced by `replacement`, where `{mask}` stands for the
    mask; `literal` is a string every match contains, checked first because it is cheap."""

    literal: str
    pattern: str
    replacement: str


Opener = Callable[[str, Any, Services], AccountAdapter]
ListenerFactory = Callable[[Mapping[str, Any], Any, Services], Listener]


def opens(target: str) -> Opener:
    """`Provider.open` for an adapter class `module:Class` taking (name, settings, services),
    imported when the first account opens: reading a config does not load the provider's
    libraries."""
    module, _, attribute = target.partition(":")

    def open_account(name: str, settings: Any, services: Services) -> AccountAdapter:
        adapter: AccountAdapter = getattr(importlib.import_module(module), attribute)(
            name, settings, services)
        return adapter

    return open_account


@dataclass(frozen=True)
class Provider:
    """A provider as the registry knows it: everything the config loader, the CLI, the console
    and the runtime need, without importing the provider's libraries before it is used.

    `webhook_actions` maps each action of `POST /{name}/{account}/{action}` to its summary in
    the OpenAPI schema. `refusal_headers` go with every refusal of those requests (Slack stops
    retrying on `X-Slack-No-Retry`). `listen(adapters, section, services)` builds the
    `Listener` shared by the running accounts, given the settings of `section`.
    `command_group` is the CLI group of its `commands` (`switchboard inbox test`), its name
    when not set.
    """

    name: str
    settings: type[AccountSettings]
    open: Opener
    capabilities: frozenset[Capability] = frozenset()
    webhook_actions: Mapping[str, str] = field(default_factory=dict)
    commands: Mapping[str, AccountCommand] = field(default_factory=dict)
    description: str = ""
    refusal_headers: Mapping[str, str] = field(default_factory=dict)
    section: ConfigSection | None = None
    listen: ListenerFactory | None = None
    secret_patterns: tuple[SecretPattern, ...] = ()
    command_group: str | None = None

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities


def capability_names(capabilities: Iterable[Capability]) -> list[str]:
    """Capabilities as sorted strings, for the API and the console."""
    return sorted(str(c) for c in capabilities)


__all__ = [
    "AccountAdapter",
    "AccountCommand",
    "AccountSettings",
    "Answer",
    "Capability",
    "CommandOption",
    "ConfigIssue",
    "ConfigSection",
    "FileAdapter",
    "Listener",
    "Provider",
    "Recorded",
    "SecretPattern",
    "Services",
    "Turns",
    "WebhookResult",
    "capability_names",
    "opens",
    "reply_in_thread",
]

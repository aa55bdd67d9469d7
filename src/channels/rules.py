"""Binding rules: which binding, if any, answers an inbound message, and why.

`match` is a pure function of the message, the bindings and one fact the caller looks up
(which bindings already replied in the message's thread). Precedence when several bindings
match, most specific first:

1. a binding that names the conversation (in `channels` or `allow_conversations`);
2. a binding that names the sender (in `allow_senders`);
3. how the message activated it: a listed channel, then a direct message or a mention, then a
   followed thread;
4. the order of the bindings in `bindings.yaml` (earlier wins).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from channels.guards import DmPolicy, RateLimit
from channels.messages import InboundMessage

SessionScope = Literal["conversation", "thread", "sender"]


@dataclass(frozen=True)
class Binding:
    """One rule connecting an agent to an account, validated at load."""

    name: str
    agent: str
    account: str
    dm: bool = True
    mentions: bool = True
    channels: tuple[str, ...] = ()
    allow_senders: tuple[str, ...] = ()
    allow_conversations: tuple[str, ...] = ()
    model: str | None = None
    follow_threads: bool = False
    session_scope: SessionScope = "conversation"
    transfer_to: tuple[str, ...] = ()  # agents the person may move their session to (/transfer)
    order: int = 0
    dm_policy: DmPolicy | None = None  # None: the account's (default open)
    rate_limit: RateLimit | None = None  # None: the account's
    coalesce: bool = False  # turns that waited for a busy session are answered in one run


@dataclass(frozen=True)
class Match:
    binding: Binding
    reason: str


@dataclass(frozen=True)
class NoMatch:
    reason: str


# How a message activated a binding, strongest first (lower is stronger).
_ACTIVATION_RANK = {"channel": 0, "dm": 1, "mention": 1, "thread": 2}


def sender_allowed(sender: str, patterns: Iterable[str]) -> bool:
    """Exact ids, or shell-style patterns such as `*@acme.com` (case-insensitive)."""
    sender = sender.lower()
    return any(fnmatchcase(sender, p.lower()) for p in patterns)


def describe(message: InboundMessage) -> str:
    """The message in words, for no-match reasons."""
    if message.kind == "dm":
        return "a direct message"
    where = "a thread reply" if message.thread else f"a {message.kind} message"
    return f"{where} that does not mention the bot" if not message.mentioned else f"{where}"


def _answers(binding: Binding) -> str:
    parts = []
    if binding.mentions:
        parts.append("mentions")
    if binding.dm:
        parts.append("DMs")
    if binding.channels:
        parts.append("every message in " + ", ".join(binding.channels))
    if binding.follow_threads:
        parts.append("threads it replied in")
    if not parts:
        return "nothing (dm, mentions and channels are all off)"
    return " and ".join(parts) + (" only" if len(parts) < 3 else "")


def _activation(
    message: InboundMessage, binding: Binding, replied_in_thread: frozenset[str]
) -> tuple[str, str] | None:
    """How the message activates the binding, as (kind, words), or None."""
    if message.conversation in binding.channels:
        return "channel", f"every message in {message.conversation} is answered"
    if message.kind == "dm":
        return ("dm", "a direct message") if binding.dm else None
    if binding.mentions and message.mentioned:
        return "mention", "the message mentions the bot"
    if binding.follow_threads and message.thread and binding.name in replied_in_thread:
        return "thread", "a reply in a thread the binding already answered"
    return None


def _check(
    message: InboundMessage, binding: Binding, replied_in_thread: frozenset[str]
) -> tuple[tuple[int, int, int, int], str] | str:
    """Rank and reason when the binding answers the message, else the reason it does not."""
    if message.for_agent and binding.agent != message.for_agent:
        return (f"{message.conversation} belongs to agent {message.for_agent}; binding "
                f"{binding.name} is for agent {binding.agent}")
    if binding.allow_conversations and message.conversation not in binding.allow_conversations:
        return (
            f"conversation {message.conversation} is not in allow_conversations "
            f"of binding {binding.name}"
        )
    if binding.allow_senders and not sender_allowed(message.sender, binding.allow_senders):
        return f"sender {message.sender} is not in allow_senders of binding {binding.name}"
    activation = _activation(message, binding, replied_in_thread)
    if activation is None:
        if message.kind == "dm":
            return f"a direct message; binding {binding.name} does not answer DMs"
        return f"{describe(message)}; binding {binding.name} answers {_answers(binding)}"
    kind, words = activation
    names_conversation = (
        message.conversation in binding.channels
        or message.conversation in binding.allow_conversations
    )
    rank = (
        0 if names_conversation else 1,
        0 if binding.allow_senders else 1,
        _ACTIVATION_RANK[kind],
        binding.order,
    )
    return rank, f"binding {binding.name} matched: {words}"


def match(
    message: InboundMessage,
    bindings: Iterable[Binding],
    replied_in_thread: frozenset[str] = frozenset(),
) -> Match | NoMatch:
    """Pick the binding that answers `message`, or say in words why none does.

    `replied_in_thread` names the bindings that already replied in the message's thread
    (it matters only to bindings with `follow_threads`).
    """
    if message.ignore_reason:
        return NoMatch(message.ignore_reason)
    candidates: list[tuple[tuple[int, int, int, int], str, Binding]] = []
    refusals: list[str] = []
    for binding in bindings:
        if binding.account != message.account:
            continue
        verdict = _check(message, binding, replied_in_thread)
        if isinstance(verdict, str):
            refusals.append(verdict)
        else:
            candidates.append((verdict[0], verdict[1], binding))
    if candidates:
        _, reason, best = min(candidates, key=lambda c: c[0])
        if len(candidates) > 1:
            others = ", ".join(c[2].name for c in candidates if c[2] is not best)
            reason += f" (more specific than {others})"
        return Match(best, reason)
    if not refusals:
        return NoMatch(f"no binding uses account {message.account}")
    return NoMatch("; ".join(refusals))

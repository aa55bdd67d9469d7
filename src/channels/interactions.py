"""Interactions as providers see them: a prompt to show with its options, a person's answer
to hand to the application, and the application's verdict to show back.

An agent's interaction reaches an adapter inside `OutboundMessage.extra["interaction"]` (a
`Prompt` as a dict): the message's `text` already says everything in words (the reply, the
prompt, numbered options), so a provider without buttons (email) sends it as it is; one with
`Capability.BUTTONS` shows the options as buttons instead. A click becomes an `AnswerAttempt`
given to `Services.answer_interaction`, whose `Verdict` says what to tell the person; once an
interaction is decided (from anywhere), the application calls the adapter's `settle` with the
prompt's message, so its buttons give way to the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from channels.errors import DeliveryError
from channels.live import LIVE_KEY

EXTRA_KEY = "interaction"  # where the prompt travels in OutboundMessage.extra


@dataclass(frozen=True)
class Option:
    id: str
    label: str


@dataclass(frozen=True)
class Prompt:
    """What to show: `reply` is the agent's text delivered before the prompt (may be empty)."""

    id: str
    kind: str  # approval | choice | input
    prompt: str
    options: tuple[Option, ...] = ()
    reply: str = ""

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> Prompt | None:
        data = extra.get(EXTRA_KEY)
        if not isinstance(data, dict):
            return None
        return cls(id=str(data["id"]), kind=str(data["kind"]), prompt=str(data["prompt"]),
                   options=tuple(Option(str(o["id"]), str(o["label"]))
                                 for o in data.get("options") or ()),
                   reply=str(data.get("reply") or ""))

    def as_extra(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "prompt": self.prompt, "reply": self.reply,
                "options": [{"id": o.id, "label": o.label} for o in self.options]}

    def numbered(self) -> str:
        """The prompt in words, options as `1. Approve` lines (email, and any provider
        without buttons); an `input` asks for a reply."""
        lines = [self.prompt]
        if self.options:
            lines += [""] + [f"{n}. {o.label}" for n, o in enumerate(self.options, 1)]
            lines += ["", "Reply with the number or the name of your choice."]
        else:
            lines += ["", "Reply to this message with your answer."]
        return "\n".join(lines)


@dataclass(frozen=True)
class AnswerAttempt:
    """A person answering an interaction at a provider: `choice` is an option's id, its
    number (1-based) or its label; `text` the free answer of an `input`. `key` identifies the
    click at the provider (a retried delivery of the same click carries the same key)."""

    interaction_id: str
    provider: str
    account: str
    by_id: str
    by_name: str = ""
    choice: str | None = None
    text: str | None = None
    key: str = ""


@dataclass(frozen=True)
class Verdict:
    """What became of an attempt: accepted (it decided the interaction) or not, and the words
    to show the person (a toast, an ephemeral message)."""

    accepted: bool
    message: str
    repeated: bool = False  # the winning click again (a double click, a retry): nothing new


@dataclass(frozen=True)
class PromptMessage:
    """Where a prompt was delivered: the message to change once it is decided."""

    account: str
    conversation: str
    message_id: str
    thread: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Settles(Protocol):
    """An adapter that can replace a delivered prompt's buttons with the decision."""

    async def settle(self, message: PromptMessage, text: str) -> None: ...


def prompt_only(error: DeliveryError, extra: dict[str, Any]) -> DeliveryError:
    """`error` of a prompt sent after its reply went out (plain, or a live message finished):
    the retry is to send the prompt alone (`DeliveryError.resume_extra`), not the reply again."""
    data = {**(extra.get(EXTRA_KEY) or {}), "reply": "", "reply_sent": True}
    error.resume_extra = {**{k: v for k, v in extra.items() if k != LIVE_KEY},
                          EXTRA_KEY: data}
    return error


def parse_callback(data: str) -> tuple[str, str] | None:
    """`ix|<interaction id>|<choice>` (button data, at most 64 bytes for Telegram) → (id,
    choice); None for data that is not ours."""
    parts = data.split("|")
    if len(parts) != 3 or parts[0] != "ix" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def callback_data(interaction_id: str, number: int) -> str:
    """The button data of option `number` (1-based): short enough for Telegram's 64 bytes."""
    return f"ix|{interaction_id}|{number}"


__all__ = ["EXTRA_KEY", "AnswerAttempt", "Option", "Prompt", "PromptMessage", "Settles",
           "Verdict", "callback_data", "parse_callback", "prompt_only"]

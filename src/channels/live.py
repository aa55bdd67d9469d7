"""Live replies, the provider side: a working indicator, an answer shown while it is written,
and the pace a provider allows. Providers with the `typing`, `stream` and `edit` capabilities
implement these shapes; `switchboard.live` drives them without knowing which provider it is.

- `Working`: shown while the agent runs (`show` again every `refresh` seconds), then `clear`.
- `LiveReply`: one message that grows: `start(text)`, `update(text)` with the whole text so
  far. Its `state()` goes into the outbox row (`OutboundMessage.extra["live"]`), and the
  adapter's `deliver` finishes that message with the final text, or sends a fresh one.
- `Pace`: the provider's published limits (configurable per account), as token buckets.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from channels.units import Duration

LIVE_KEY = "live"  # the key of OutboundMessage.extra that carries a LiveReply's state


# --- pacing ----------------------------------------------------------------------------------

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|min|h)\s*$")
_PER = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Rate:
    """`count` messages per `seconds`, as a token bucket holding up to `burst`."""

    count: float
    seconds: float
    burst: float = 1.0

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        return f"{self.count:g}/{self.seconds:g}s"


def parse_rate(value: Any) -> Rate | None:
    """`1/s`, `20/min`, `30/s`, `5/10s`; None, `none` or `off`: no limit."""
    if value is None or isinstance(value, Rate):
        return value
    if isinstance(value, str) and value.strip().lower() in ("none", "off", "unlimited"):
        return None
    found = _RATE.match(str(value))
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a rate; write 1/s, 20/min or 30/s (or none)")
    seconds = float(found.group(2) or 1) * _PER[found.group(3)]
    count = float(found.group(1))
    return Rate(count, seconds, burst=max(1.0, count if seconds <= 1 else 1.0))


class PacingSettings(BaseModel):
    """`pacing:` of an account: override the provider's limits (`none` turns one off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    conversation: str | None = "default"
    group: str | None = "default"
    account: str | None = "default"

    @field_validator("conversation", "group", "account")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and value != "default":
            parse_rate(value)
        return value


@dataclass(frozen=True)
class Pace:
    """The limits a provider publishes: per conversation, per group conversation (on top),
    per account. `label` names them for the timeline ("Telegram's per-chat limit")."""

    conversation: Rate | None = None
    group: Rate | None = None
    account: Rate | None = None
    label: str = "the provider's"
    conversation_word: str = "per-conversation"

    def configured(self, settings: PacingSettings | None) -> Pace:
        """These limits with an account's `pacing:` overrides applied."""
        if settings is None:
            return self

        def pick(value: str | None, default: Rate | None) -> Rate | None:
            return default if value == "default" else parse_rate(value)

        return Pace(pick(settings.conversation, self.conversation),
                    pick(settings.group, self.group), pick(settings.account, self.account),
                    self.label, self.conversation_word)


# --- the account keys ------------------------------------------------------------------------


class LiveSettings(BaseModel):
    """The account keys of live replies, shared by providers that have them."""

    typing: bool = True
    streaming: bool = True
    edit_interval: Duration = timedelta(seconds=1)
    pacing: PacingSettings | None = None

    @field_validator("edit_interval")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() <= 0:
            raise ValueError("edit_interval must be longer than 0s (for example 1s)")
        return value


# --- the shapes an adapter returns -----------------------------------------------------------


class Working(Protocol):
    """A working indicator for one reply. `show` says how it was shown (`typing`, `status`,
    `reaction`) and raises DeliveryError when the provider refuses; `clear(replied)` takes it
    away (after the reply, or when the agent failed)."""

    refresh: float | None

    async def show(self) -> str: ...

    async def clear(self, replied: bool) -> None: ...


class LiveReply(Protocol):
    """One message shown while it is written. `mode` says how (`stream`, `edit`, `draft`);
    `start` and `update` take the whole text so far and raise DeliveryError; `state()` is what
    the final delivery (maybe in another process) needs to finish it."""

    mode: str
    message_id: str | None
    limit: int  # characters one message holds; the rest continues in new messages

    async def start(self, text: str) -> None: ...

    async def update(self, text: str) -> None: ...

    def state(self) -> dict[str, Any]: ...

    async def abandon(self) -> None:
        """The agent failed: close what was started (a stream is stopped), as it is."""
        ...


class LiveAdapter(Protocol):
    """What an adapter with `typing`, `stream` or `edit` offers besides the protocol:
    `settings` (a `LiveSettings`), its `pace`, a working indicator for a message, and a live
    reply `out` to it (`resume`: the state of one a dead process started)."""

    pace: Pace

    def working(self, message: Any) -> Working | None: ...

    def live(self, message: Any, out: Any, resume: dict[str, Any] | None) -> LiveReply | None: ...

    def is_group(self, conversation: str) -> bool:
        """Whether the conversation is paced as a group (on top of per conversation)."""
        ...


def digest(text: str) -> str:
    """A short fingerprint of the text a live message shows (kept in the outbox row)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def split_text(text: str, limit: int) -> list[str]:
    """Cut text into pieces of at most `limit` characters, in order.

    Cuts at the last paragraph break ("\\n\\n") that fits, else the last line break, else hard;
    the break itself is dropped, and so are blank pieces (providers refuse empty messages).
    """
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 2]
        cut, sep = window.rfind("\n\n", 1, limit + 2), 2
        if cut <= 0:
            cut, sep = window.rfind("\n", 1, limit + 1), 1
        if cut <= 0:
            cut, sep = limit, 0
        chunks.append(rest[:cut])
        rest = rest[cut + sep :]
    chunks.append(rest)
    kept = [chunk for chunk in chunks if chunk.strip()]
    return kept or [text]


__all__ = ["LIVE_KEY", "LiveAdapter", "LiveReply", "LiveSettings", "Pace", "PacingSettings",
           "Rate", "Working", "digest", "parse_rate", "split_text"]

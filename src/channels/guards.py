"""Who may talk to an agent, and how much: DM policy, pairing codes, rate limits and loop
guards, as validated data and pure decisions with their reasons in words.

The I/O around them (counting in the database, sending the notice) is the application's;
these say what a count or a pairing means, like `rules.match` says what a binding means.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from channels.units import Timeout

DmPolicy = Literal["open", "allowlist", "pairing"]

# --- rates: "10/min" ---------------------------------------------------------------------

_RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
_RATE_UNITS: dict[str, tuple[int, str]] = {
    "s": (1, "a second"), "sec": (1, "a second"), "second": (1, "a second"),
    "min": (60, "a minute"), "minute": (60, "a minute"),
    "h": (3600, "an hour"), "hour": (3600, "an hour"),
    "d": (86400, "a day"), "day": (86400, "a day"),
}


class Rate(BaseModel):
    """At most `count` per `seconds`, written `10/min` (units: s, min, h, day)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    seconds: int
    text: str
    window_words: str

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, Rate | dict):
            return value
        found = _RATE.match(str(value).lower()) if isinstance(value, str) else None
        if not found or found.group(2) not in _RATE_UNITS:
            raise ValueError(f"{value!r} is not a rate; write COUNT/UNIT with a unit of s, min, "
                             f"h or day, such as 10/min")
        seconds, words = _RATE_UNITS[found.group(2)]
        return {"count": int(found.group(1)), "seconds": seconds,
                "text": f"{int(found.group(1))}/{found.group(2)}", "window_words": words}

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.seconds)


class RateLimit(BaseModel):
    """`rate_limit: {per_sender: 10/min, per_conversation: 30/min}` (a plain `10/min` is
    `per_sender`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_sender: Rate | None = None
    per_conversation: Rate | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"per_sender": value} if isinstance(value, str) else value


class LoopGuard(BaseModel):
    """At most `replies` of our replies to one other bot in one conversation within `window`,
    then `cooldown` of silence. `applies_to: every_sender` counts every correspondent instead
    (email, where an auto-responder is a sender like any other)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replies: int = Field(default=20, ge=1)
    window: Timeout = timedelta(seconds=60)
    cooldown: Timeout = timedelta(seconds=60)
    applies_to: Literal["bots", "every_sender"] = "bots"


def rate_reason(who: str, count: int, rate: Rate) -> str:
    """`sender U123 sent 11 messages in a minute; the limit is 10/min`."""
    verb = "sent" if who.startswith("sender") else "got"
    return (f"{who} {verb} {count} messages in {rate.window_words}; "
            f"the limit is {rate.text}")


def rate_notice(rate: Rate) -> str:
    return (f"You are sending messages faster than this agent answers ({rate.text}). "
            f"Please wait a little; messages sent meanwhile are not answered.")


def loop_reason(who: str, where: str, guard: LoopGuard, until: datetime) -> str:
    """`loop guard: bot B1 in C1 drew 20 replies within 60s (its budget); …`."""
    return (f"loop guard: {who}{where} drew {guard.replies} replies within "
            f"{_seconds(guard.window)} (its budget); not answered until "
            f"{until.strftime('%H:%M:%S')} UTC (cooldown {_seconds(guard.cooldown)})")


def _seconds(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 600:
        return f"{seconds // 60}min"
    return f"{seconds}s"


# --- pairing codes ---------------------------------------------------------------------------

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # A–Z and 2–9, without O and I
CODE_LENGTH = 8
CODE_TTL = timedelta(hours=1)
MAX_PENDING = 3  # pending codes per account; a fourth stranger is told to try later
RESEND_AFTER = timedelta(minutes=10)  # a repeated DM re-sends the code at most this often
WRONG_CODES = 5  # wrong codes an operator may enter in WRONG_WINDOW before being refused
WRONG_WINDOW = timedelta(minutes=10)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(text: str) -> str | None:
    """The code as stored (upper case), or None when `text` cannot be one."""
    code = text.strip().upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


@dataclass(frozen=True)
class PairingState:
    """What is stored of one sender on one account."""

    status: Literal["pending", "waiting", "approved", "denied"]  # waiting: told to try later
    code: str | None
    expires_at: datetime | None
    notified_at: datetime | None


@dataclass(frozen=True)
class PairingVerdict:
    """What to do with a DM under `dm_policy: pairing`: admit it, or ignore it with `reason`,
    telling the person `notice` (None: say nothing), with `code` issued or kept."""

    admit: bool
    reason: str = ""
    notice: str | None = None
    code: str | None = None
    new: bool = False  # a new code is issued (or an expired one replaced)


def code_notice(code: str) -> str:
    return (f"Hi! This agent answers people an operator has approved. Your pairing code is "
            f"{code}; send it to an operator (it is valid for an hour). You will hear from "
            f"me when you are in.")


TRY_LATER = ("Hi! This agent answers people an operator has approved, and too many requests "
             "are waiting right now. Please try again later.")
YOU_ARE_IN = "You are in: an operator approved you, so this agent answers your messages now."


def pairing_verdict(state: PairingState | None, pending_others: int, now: datetime,
                    account: str, sender: str, fresh_code: str) -> PairingVerdict:
    """Decide an unknown or known sender's DM under pairing (`pending_others`: the account's
    other unexpired pending codes; `fresh_code`: the code to issue if one is issued)."""
    if state is not None and state.status == "approved":
        return PairingVerdict(True)
    if state is not None and state.status == "denied":
        return PairingVerdict(False, f"sender {sender} was denied pairing on account {account}; "
                              "`switchboard pairing revoke` lets them pair again")
    live = (state is not None and state.code is not None and state.expires_at is not None
            and state.expires_at > now)
    if live:
        assert state is not None and state.code is not None
        resend = state.notified_at is None or now - state.notified_at >= RESEND_AFTER
        return PairingVerdict(False, f"awaiting pairing approval (code {state.code})",
                              code_notice(state.code) if resend else None, state.code)
    if pending_others >= MAX_PENDING:
        told = (state is not None and state.notified_at is not None
                and now - state.notified_at < RESEND_AFTER)
        return PairingVerdict(False, f"awaiting pairing approval: {pending_others} codes are "
                              f"pending on account {account} (at most {MAX_PENDING}); the sender "
                              "is told to try later", None if told else TRY_LATER)
    return PairingVerdict(False, f"awaiting pairing approval (code {fresh_code})",
                          code_notice(fresh_code), fresh_code, new=True)


__all__ = [
    "CODE_ALPHABET", "CODE_TTL", "MAX_PENDING", "RESEND_AFTER", "TRY_LATER", "WRONG_CODES",
    "WRONG_WINDOW", "YOU_ARE_IN", "DmPolicy", "LoopGuard", "PairingState", "PairingVerdict",
    "Rate", "RateLimit", "code_notice", "loop_reason", "new_code", "normalize_code",
    "pairing_verdict", "rate_notice", "rate_reason",
]

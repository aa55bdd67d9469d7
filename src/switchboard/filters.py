"""The values a listing filter may take, and the one check of them that the CLI and the API
share: a value nothing can have is refused with the allowed ones, never an empty answer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sessions.states import STATES
from switchboard.errors import BadFilter
from switchboard.providers import PROVIDERS

TURN_STATUSES = ("pending", "held", "delivered", "failed", "ignored", "duplicate",
                 "cancelled", "queued")
"""Every status a turn can have (`delivered` and `failed` are final)."""
SESSION_STATES = STATES
SESSION_TAGS = ("test", "live")
TURN_PROVIDERS = (*PROVIDERS, "api")  # "api": messages sent through POST /api/sessions/…
SESSION_SOURCES = TURN_PROVIDERS

TURN_CHOICES: Mapping[str, tuple[str, ...]] = {"status": TURN_STATUSES,
                                                "provider": TURN_PROVIDERS}
SESSION_CHOICES: Mapping[str, tuple[str, ...]] = {"state": SESSION_STATES,
                                                   "source": SESSION_SOURCES,
                                                   "tag": SESSION_TAGS}


def check_filters(filters: Mapping[str, object], choices: Mapping[str, Iterable[str]]) -> None:
    """Raise `BadFilter` naming each filter whose value is not one of its choices."""
    problems = []
    for key, allowed in choices.items():
        value = filters.get(key)
        allowed = tuple(allowed)
        if value is not None and value not in allowed:
            problems.append(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    if problems:
        raise BadFilter("; ".join(problems))


def described(filters: Mapping[str, object]) -> str:
    """The filters that were set, as `status=failed, agent=triager` (for 'no turns match')."""
    return ", ".join(f"{k}={v}" for k, v in filters.items()
                     if v not in (None, False, "") and not k.startswith("archive"))


__all__ = ["SESSION_CHOICES", "TURN_CHOICES", "TURN_STATUSES", "check_filters", "described"]

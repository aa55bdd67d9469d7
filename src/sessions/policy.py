"""Session policy as data: which move a session is due by its timestamps, written once.

The same rules decide on a message's arrival (`expiry`: is the open session over?) and in the
sweeps (`sweep_cutoffs`: one conditional UPDATE per rule), so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from sessions.states import OPEN_STATES

Cause = Literal["max_duration", "idle_timeout"]
Since = Literal["started_at", "last_activity_at"]

# A session ended for idleness may be reopened by its next message within keep_alive.
REOPENABLE_CAUSE: Cause = "idle_timeout"


class Limits(Protocol):
    """The durations a policy sets (config's `sessions:`); None switches a limit off."""

    @property
    def idle_timeout(self) -> timedelta | None: ...

    @property
    def max_duration(self) -> timedelta | None: ...

    @property
    def keep_alive(self) -> timedelta | None: ...


@dataclass(frozen=True)
class Rule:
    """`before → target`, for `cause`, once `since` is `times` × the policy's `cause` old."""

    before: str
    target: str
    cause: Cause
    since: Since
    times: int = 1

    def limit(self, policy: Limits) -> timedelta | None:
        base: timedelta | None = getattr(policy, self.cause)
        return base * self.times if base else None


# Precedence: the first rule that applies is the move. The sweep runs them in this order, each
# on the sessions still in `before`, so a session moves at most once per sweep.
RULES: tuple[Rule, ...] = (
    *(Rule(state, "ended", "max_duration", "started_at") for state in OPEN_STATES),
    # idle after one idle_timeout without activity, ended after a second one; paused sessions
    # wait for their operator and waiting ones for their interaction's answer or expiry
    # (only max_duration ends them)
    Rule("idle", "ended", "idle_timeout", "last_activity_at", 2),
    Rule("live", "ended", "idle_timeout", "last_activity_at", 2),
    Rule("live", "idle", "idle_timeout", "last_activity_at", 1),
)


@dataclass(frozen=True)
class Cutoff:
    """A rule for one sweep: it applies to sessions in `rule.before` whose `rule.since` is at
    or before `at`."""

    rule: Rule
    at: datetime


def sweep_cutoffs(policy: Limits, now: datetime) -> list[Cutoff]:
    """The rules the policy switches on, with their cutoffs at `now`, in precedence order."""
    cutoffs = []
    for rule in RULES:
        limit = rule.limit(policy)
        if limit:
            cutoffs.append(Cutoff(rule, now - limit))
    return cutoffs


def due_move(state: str, started_at: datetime, last_activity_at: datetime, policy: Limits,
             now: datetime) -> Rule | None:
    """The move policy makes of a session at `now`, or None when it has none to make."""
    times = {"started_at": started_at, "last_activity_at": last_activity_at}
    for cutoff in sweep_cutoffs(policy, now):
        if cutoff.rule.before == state and times[cutoff.rule.since] <= cutoff.at:
            return cutoff.rule
    return None


def expiry(state: str, started_at: datetime, last_activity_at: datetime, policy: Limits,
           now: datetime) -> Cause | None:
    """Why an open session is over by policy at `now` (checked when a message arrives)."""
    move = due_move(state, started_at, last_activity_at, policy, now)
    return move.cause if move is not None and move.target == "ended" else None


def reopen_since(policy: Limits, now: datetime) -> datetime | None:
    """Sessions ended for `REOPENABLE_CAUSE` at or after this are reopened by a new message;
    None when keep_alive is off."""
    return now - policy.keep_alive if policy.keep_alive else None

"""The session policy, property-tested: one set of rules decides on arrival and in sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessions import (
    OPEN_STATES,
    STATES,
    TRANSITIONS,
    StateChange,
    TransitionRefused,
    check_transition,
    due_move,
    expiry,
    sweep_cutoffs,
)
from sessions.policy import reopen_since

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Policy:
    idle_timeout: timedelta | None
    max_duration: timedelta | None
    keep_alive: timedelta | None = None


limits = st.one_of(st.none(), st.timedeltas(min_value=timedelta(seconds=1),
                                            max_value=timedelta(days=2)))
policies = st.builds(Policy, limits, limits, limits)
ages = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5))


@st.composite
def sessions(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    """An open session: its state, when it started, and its last activity (not before that)."""
    started = NOW - draw(ages)
    last = started + draw(st.timedeltas(min_value=timedelta(0), max_value=NOW - started))
    return draw(st.sampled_from(OPEN_STATES)), started, last


def swept(state: str, started: datetime, last: datetime, policy: Policy
          ) -> list[tuple[str, str, str]]:
    """What the sweep's conditional UPDATEs do to one session, run in their order: each on
    sessions still in its `before` state whose timestamp is at or before its cutoff."""
    times = {"started_at": started, "last_activity_at": last}
    moves = []
    for cutoff in sweep_cutoffs(policy, NOW):
        rule = cutoff.rule
        if state == rule.before and times[rule.since] <= cutoff.at:
            moves.append((rule.before, rule.target, rule.cause))
            state = rule.target
    return moves


def ended_by_words(state: str, started: datetime, last: datetime, policy: Policy) -> str | None:
    """The documented policy: max_duration ends any open session; idle_timeout makes a live
    session idle, and ends a live or idle one after a second idle_timeout; a paused session
    waits for its operator."""
    if policy.max_duration and NOW - started >= policy.max_duration:
        return "max_duration"
    if (policy.idle_timeout and state not in ("paused", "waiting")
            and NOW - last >= 2 * policy.idle_timeout):
        return "idle_timeout"
    return None


@given(sessions(), policies)
def test_a_sweep_makes_the_due_move_and_only_that_one(session, policy):
    state, started, last = session
    move = due_move(state, started, last, policy, NOW)
    expected = [] if move is None else [(move.before, move.target, move.cause)]
    assert swept(state, started, last, policy) == expected


@given(sessions(), policies)
def test_every_move_of_the_policy_is_in_the_state_table(session, policy):
    state, started, last = session
    move = due_move(state, started, last, policy, NOW)
    if move is not None:
        assert move.before == state
        check_transition(move.before, move.target)


@given(sessions(), policies)
def test_arrival_ends_exactly_what_the_policy_says_is_over(session, policy):
    state, started, last = session
    assert expiry(state, started, last, policy, NOW) == ended_by_words(state, started, last,
                                                                       policy)


@given(sessions(), policies)
def test_a_live_session_goes_idle_after_one_idle_timeout_without_ending(session, policy):
    state, started, last = session
    move = due_move(state, started, last, policy, NOW)
    idle_for = NOW - last
    if (state == "live" and policy.idle_timeout and ended_by_words(state, started, last, policy)
            is None and idle_for >= policy.idle_timeout):
        assert move is not None and (move.target, move.cause) == ("idle", "idle_timeout")
    if move is not None and move.target == "idle":
        assert expiry(state, started, last, policy, NOW) is None  # a message keeps it going


@given(sessions(), policies, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
def test_once_over_a_session_stays_over(session, policy, later):
    state, started, last = session
    if expiry(state, started, last, policy, NOW) is not None:
        assert expiry(state, started, last, policy, NOW + later) is not None


@given(st.sampled_from(OPEN_STATES), policies)
def test_a_session_just_active_is_due_nothing(state, policy):
    assert due_move(state, NOW, NOW, policy, NOW) is None


@given(sessions())
def test_with_every_limit_off_nothing_moves(session):
    state, started, last = session
    off = Policy(None, None, None)
    assert due_move(state, started, last, off, NOW) is None
    assert sweep_cutoffs(off, NOW) == []


def test_the_boundaries_are_inclusive():
    policy = Policy(timedelta(minutes=30), timedelta(hours=4))
    just = NOW - timedelta(minutes=30)
    assert due_move("live", NOW - timedelta(hours=1), just, policy, NOW).target == "idle"
    assert due_move("live", NOW - timedelta(hours=1), just + timedelta(microseconds=1), policy,
                    NOW) is None
    assert expiry("paused", NOW - timedelta(hours=4), NOW, policy, NOW) == "max_duration"
    assert expiry("idle", NOW - timedelta(hours=2), NOW - timedelta(hours=1), policy,
                  NOW) == "idle_timeout"
    assert expiry("paused", NOW - timedelta(hours=2), NOW - timedelta(hours=1), policy,
                  NOW) is None


@given(policies)
def test_keep_alive_reopens_within_its_window(policy):
    since = reopen_since(policy, NOW)
    assert since == (NOW - policy.keep_alive if policy.keep_alive else None)


@given(st.sampled_from(STATES), st.sampled_from(STATES))
def test_the_state_table_refuses_in_words(current, target):
    if target in TRANSITIONS[current]:
        check_transition(current, target)
        return
    with pytest.raises(TransitionRefused) as refused:
        check_transition(current, target)
    assert f"a session that is {current} cannot become {target}" in str(refused.value)


def test_a_state_change_is_one_transcript_line_and_one_event():
    change = StateChange("ses_1", "live", "paused", "operator", "ops")
    assert change.transcript_entry(NOW) == {
        "session_id": "ses_1", "at": NOW, "role": "system",
        "text": "session live → paused (operator)", "turn_id": None,
        "data": {"from": "live", "to": "paused", "cause": "operator", "actor": "ops"}}
    assert change.event() == {"session_id": "ses_1", "from": "live", "to": "paused",
                              "cause": "operator", "actor": "ops"}


def test_sessions_imports_neither_switchboard_nor_channels():
    import subprocess
    import sys

    code = ("import sys, sessions, sessions.events, sessions.policy, sessions.states; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'switchboard', 'channels'}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
    assert found.stdout.strip() == "[]"

"""Following shared events by id when ids commit out of order (PostgreSQL sequences)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from switchboard.feed import IdCursor


@st.composite
def commits(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Ids 1..n in the order their transactions commit, and where the follower polls."""
    ids = draw(st.permutations(range(1, draw(st.integers(1, 40)) + 1)))
    polls = sorted(draw(st.lists(st.integers(0, len(ids)), max_size=10)))
    return list(ids), [*polls, len(ids)]


@given(commits())
def test_every_id_is_taken_once_whatever_the_commit_order(plan):
    order, polls = plan
    cursor = IdCursor(0)
    taken: list[int] = []
    for upto in polls:  # each poll reads what has committed by then (within `wait`)
        committed = order[:upto]
        visible = [i for i in committed if i > cursor.last or i in cursor.late]
        taken += cursor.take(visible, now=0.0)
    assert sorted(taken) == sorted(order)
    assert len(taken) == len(set(taken))


def test_a_gap_that_never_fills_is_given_up_and_a_jump_is_not_waited_for():
    cursor = IdCursor(10, wait=5.0, most=100)
    assert cursor.take([12], now=0.0) == [12]
    assert set(cursor.late) == {11}
    assert cursor.take([], now=6.0) == []
    assert cursor.late == {}  # a rolled-back id: never comes
    assert cursor.take([11], now=7.0) == []  # and is not taken late after that
    assert cursor.take([5000], now=8.0) == [5000]
    assert cursor.late == {}  # a sequence jump is a gap, not 4,987 late rows

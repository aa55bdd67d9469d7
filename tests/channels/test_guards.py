"""The pure parts of admission: rates as written in bindings.yaml, pairing codes, and what a DM
under `dm_policy: pairing` gets, decision by decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from channels.guards import (
    CODE_ALPHABET,
    MAX_PENDING,
    TRY_LATER,
    PairingState,
    RateLimit,
    new_code,
    normalize_code,
    pairing_verdict,
    rate_reason,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "count", "seconds"), [
    ("10/min", 10, 60), ("30/minute", 30, 60), ("5/s", 5, 1), ("100/h", 100, 3600),
    (" 2 / day ", 2, 86400), ("3/MIN", 3, 60)])
def test_rates_are_read(text: str, count: int, seconds: int) -> None:
    rate = RateLimit.model_validate({"per_sender": text}).per_sender
    assert rate is not None and (rate.count, rate.seconds) == (count, seconds)


@pytest.mark.parametrize("text", ["10/fortnight", "ten/min", "10", "0/min", "-1/min", "/min"])
def test_unreadable_rates_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        RateLimit.model_validate({"per_conversation": text})


def test_a_plain_rate_is_per_sender_and_the_reason_reads_as_the_issue_says() -> None:
    limits = RateLimit.model_validate("10/min")
    assert limits.per_sender is not None and limits.per_conversation is None
    assert rate_reason("sender U123", 11, limits.per_sender) == \
        "sender U123 sent 11 messages in a minute; the limit is 10/min"


def test_codes_use_the_alphabet_and_are_entered_in_any_case() -> None:
    assert set(CODE_ALPHABET) == set("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200 and all(len(c) == 8 and set(c) <= set(CODE_ALPHABET)
                                     for c in codes)
    assert normalize_code(" k7q2m9xd ") == "K7Q2M9XD"
    for wrong in ("K7Q2M9X", "K7Q2M9XDD", "K7Q2M9X0", "O7Q2M9XD", "I7Q2M9XD", "K7Q2M9X1"):
        assert normalize_code(wrong) is None


def pending(code: str = "K7Q2M9XD", *, issued: timedelta = timedelta(minutes=1),
            told: timedelta | None = None) -> PairingState:
    return PairingState("pending", code, NOW - issued + timedelta(hours=1),
                        NOW - (told if told is not None else issued))


def test_a_stranger_gets_the_fresh_code_and_the_reason_names_it() -> None:
    verdict = pairing_verdict(None, 0, NOW, "slack-acme", "U1", "K7Q2M9XD")
    assert not verdict.admit and verdict.new and verdict.code == "K7Q2M9XD"
    assert verdict.reason == "awaiting pairing approval (code K7Q2M9XD)"
    assert verdict.notice is not None and "K7Q2M9XD" in verdict.notice


def test_the_same_code_is_resent_at_most_every_ten_minutes() -> None:
    soon = pairing_verdict(pending(told=timedelta(minutes=9)), 0, NOW, "a", "U1", "NEWK2DE3")
    assert soon.code == "K7Q2M9XD" and soon.notice is None and not soon.new
    later = pairing_verdict(pending(told=timedelta(minutes=10)), 0, NOW, "a", "U1", "NEWK2DE3")
    assert later.code == "K7Q2M9XD" and later.notice is not None


def test_an_expired_code_is_replaced() -> None:
    verdict = pairing_verdict(pending(issued=timedelta(hours=1)), 0, NOW, "a", "U1", "NEWK2DE3")
    assert verdict.new and verdict.code == "NEWK2DE3"


def test_beyond_the_pending_cap_a_stranger_is_told_to_try_later_once() -> None:
    first = pairing_verdict(None, MAX_PENDING, NOW, "a", "U4", "NEWK2DE3")
    assert first.code is None and first.notice == TRY_LATER and not first.admit
    waiting = PairingState("waiting", None, None, NOW - timedelta(minutes=1))
    assert pairing_verdict(waiting, MAX_PENDING, NOW, "a", "U4", "NEWK2DE3").notice is None
    # a pending code of the sender's own is not turned away by the cap
    assert pairing_verdict(pending(), MAX_PENDING, NOW, "a", "U1", "X").code == "K7Q2M9XD"


def test_approved_senders_pass_and_denied_ones_hear_nothing() -> None:
    approved = PairingState("approved", "K7Q2M9XD", None, None)
    assert pairing_verdict(approved, MAX_PENDING, NOW, "a", "U1", "X").admit
    denied = pairing_verdict(PairingState("denied", "K7Q2M9XD", None, None), 0, NOW, "a",
                             "U1", "X")
    assert not denied.admit and denied.notice is None and "revoke" in denied.reason

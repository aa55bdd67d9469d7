"""Binding rules: which binding answers a message, the reason in words, and the precedence."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.messages import InboundMessage
from channels.rules import Binding, Match, NoMatch, match

FAST = settings(max_examples=200, deadline=None)


def msg(**fields: Any) -> InboundMessage:
    """A top-level channel message from U1 in C1 on account acme, unless told otherwise."""
    base: dict[str, Any] = {"provider": "slack", "account": "acme", "event_id": "Ev1",
                            "conversation": "C1", "kind": "channel", "sender": "U1",
                            "text": "hello", "message_id": "1.1"}
    return InboundMessage(**{**base, **fields})


def rule(name: str, order: int = 0, **fields: Any) -> Binding:
    """A binding of agent `triager` on account acme (dm and mentions on by default)."""
    return Binding(**{"name": name, "agent": "triager", "account": "acme", "order": order,
                      **fields})


def winner(result: Match | NoMatch) -> str:
    assert isinstance(result, Match), result
    return result.binding.name


# --- reasons, one case at a time ---------------------------------------------------------------


def test_direct_message_matches_a_binding_that_answers_dms():
    result = match(msg(kind="dm", conversation="D1"), [rule("triage")])
    assert result == Match(rule("triage"), "binding triage matched: a direct message")


def test_direct_message_to_a_binding_without_dm_is_refused():
    result = match(msg(kind="dm", conversation="D1", mentioned=True),
                   [rule("triage", dm=False)])
    assert result == NoMatch("a direct message; binding triage does not answer DMs")


def test_channel_message_without_mention_is_refused_in_words():
    result = match(msg(), [rule("triage-slack")])
    assert result == NoMatch("a channel message that does not mention the bot; "
                             "binding triage-slack answers mentions and DMs only")


def test_group_message_without_mention_is_refused_in_words():
    result = match(msg(kind="group", conversation="G1"), [rule("triage")])
    assert result == NoMatch("a group message that does not mention the bot; "
                             "binding triage answers mentions and DMs only")


def test_mention_matches():
    result = match(msg(mentioned=True), [rule("triage")])
    assert result == Match(rule("triage"), "binding triage matched: the message mentions the bot")


def test_mention_to_a_binding_that_ignores_mentions_is_refused():
    result = match(msg(mentioned=True), [rule("triage", mentions=False)])
    assert result == NoMatch("a channel message; binding triage answers DMs only")


def test_every_message_in_a_listed_channel_matches():
    result = match(msg(), [rule("support", channels=("C1",), dm=False, mentions=False)])
    assert result == Match(rule("support", channels=("C1",), dm=False, mentions=False),
                           "binding support matched: every message in C1 is answered")


def test_listed_channel_also_covers_its_threads():
    result = match(msg(thread="9.9"), [rule("support", channels=("C1",))])
    assert winner(result) == "support"
    assert "every message in C1" in result.reason


def test_binding_that_answers_nothing_says_so():
    result = match(msg(mentioned=True), [rule("off", dm=False, mentions=False)])
    assert result == NoMatch("a channel message; binding off answers nothing "
                             "(dm, mentions and channels are all off)")


def test_refusal_lists_everything_the_binding_answers():
    binding = rule("wide", channels=("C2", "C3"), follow_threads=True)
    result = match(msg(), [binding])
    assert result == NoMatch("a channel message that does not mention the bot; binding wide "
                             "answers mentions and DMs and every message in C2, C3 and threads "
                             "it replied in")


def test_thread_reply_without_mention_is_refused_in_words():
    result = match(msg(thread="1.0"), [rule("triage")])
    assert result == NoMatch("a thread reply that does not mention the bot; "
                             "binding triage answers mentions and DMs only")


def test_sender_outside_allow_senders_is_refused():
    result = match(msg(sender="U123", mentioned=True),
                   [rule("triage-slack", allow_senders=("U0ALICE",))])
    assert result == NoMatch("sender U123 is not in allow_senders of binding triage-slack")


def test_conversation_outside_allow_conversations_is_refused():
    result = match(msg(conversation="C9", mentioned=True),
                   [rule("triage", allow_conversations=("C1", "C2"))])
    assert result == NoMatch("conversation C9 is not in allow_conversations of binding triage")


def test_allow_conversations_is_checked_before_allow_senders():
    binding = rule("triage", allow_conversations=("C2",), allow_senders=("U2",))
    result = match(msg(mentioned=True), [binding])
    assert result == NoMatch("conversation C1 is not in allow_conversations of binding triage")


def test_no_binding_for_the_account():
    other = Binding(name="elsewhere", agent="triager", account="beta")
    assert match(msg(mentioned=True), [other]) == NoMatch("no binding uses account acme")
    assert match(msg(mentioned=True), []) == NoMatch("no binding uses account acme")


def test_bindings_of_other_accounts_are_not_in_the_refusal():
    other = Binding(name="elsewhere", agent="triager", account="beta", channels=("C1",))
    result = match(msg(), [other, rule("triage")])
    assert isinstance(result, NoMatch)
    assert "elsewhere" not in result.reason


def test_every_refusal_is_reported():
    result = match(msg(sender="U9", mentioned=True),
                   [rule("first", allow_senders=("U1",)),
                    rule("second", order=1, mentions=False)])
    assert result == NoMatch("sender U9 is not in allow_senders of binding first; "
                             "a channel message; binding second answers DMs only")


def test_winner_names_the_bindings_it_beat():
    bindings = [rule("general"), rule("alice-only", order=1, allow_senders=("U1",)),
                rule("quiet", order=2, mentions=False)]
    result = match(msg(mentioned=True), bindings)
    assert result == Match(bindings[1], "binding alice-only matched: the message mentions the "
                                        "bot (more specific than general)")


# --- follow_threads ---------------------------------------------------------------------------


def test_follow_threads_answers_a_thread_it_replied_in_without_mention():
    binding = rule("triage", follow_threads=True)
    result = match(msg(thread="1.0"), [binding], frozenset({"triage"}))
    assert result == Match(binding, "binding triage matched: a reply in a thread the binding "
                                    "already answered")


def test_follow_threads_ignores_threads_it_did_not_reply_in():
    binding = rule("triage", follow_threads=True)
    assert isinstance(match(msg(thread="1.0"), [binding]), NoMatch)
    assert isinstance(match(msg(thread="1.0"), [binding], frozenset({"someone-else"})), NoMatch)


def test_follow_threads_needs_a_thread():
    binding = rule("triage", follow_threads=True)
    assert isinstance(match(msg(), [binding], frozenset({"triage"})), NoMatch)


def test_without_follow_threads_a_thread_reply_needs_a_mention():
    binding = rule("triage")
    assert isinstance(match(msg(thread="1.0"), [binding], frozenset({"triage"})), NoMatch)
    assert winner(match(msg(thread="1.0", mentioned=True), [binding],
                        frozenset({"triage"}))) == "triage"


def test_follow_threads_still_honours_allow_senders():
    binding = rule("triage", follow_threads=True, allow_senders=("U1",))
    result = match(msg(thread="1.0", sender="U2"), [binding], frozenset({"triage"}))
    assert result == NoMatch("sender U2 is not in allow_senders of binding triage")


# --- sender patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["bob@acme.com", "Bob@ACME.com", "ops+alerts@acme.com"])
def test_email_pattern_admits_the_domain_case_insensitively(sender):
    binding = rule("mail", allow_senders=("*@acme.com",))
    assert winner(match(msg(kind="dm", sender=sender), [binding])) == "mail"


@pytest.mark.parametrize("sender", ["bob@notacme.com", "bob@acme.com.evil.org",
                                    "eve@sub.acme.com", "acme.com"])
def test_email_pattern_refuses_other_domains(sender):
    binding = rule("mail", allow_senders=("*@acme.com",))
    result = match(msg(kind="dm", sender=sender), [binding])
    assert result == NoMatch(f"sender {sender} is not in allow_senders of binding mail")


def test_pattern_written_in_capitals_admits_lower_case_sender():
    binding = rule("mail", allow_senders=("*@ACME.COM",))
    assert winner(match(msg(kind="dm", sender="bob@acme.com"), [binding])) == "mail"


def test_exact_sender_ids_are_compared_case_insensitively():
    binding = rule("alice", allow_senders=("u0alice",))
    assert winner(match(msg(kind="dm", sender="U0ALICE"), [binding])) == "alice"


# --- ignore_reason ---------------------------------------------------------------------------


def test_ignore_reason_short_circuits_even_a_sure_match():
    message = msg(kind="dm", mentioned=True, ignore_reason="the bot's own message")
    bindings = [rule("triage", channels=("C1",)), rule("all", order=1)]
    assert match(message, bindings) == NoMatch("the bot's own message")
    assert match(message, []) == NoMatch("the bot's own message")


# --- precedence ----------------------------------------------------------------------------


def test_binding_naming_the_conversation_in_allow_conversations_beats_one_that_does_not():
    bindings = [rule("general"), rule("support", order=1, allow_conversations=("C1",))]
    result = match(msg(mentioned=True), bindings)
    assert winner(result) == "support"
    assert result.reason.endswith("(more specific than general)")


def test_binding_naming_the_conversation_in_channels_beats_one_that_does_not():
    bindings = [rule("general"), rule("support", order=1, channels=("C1",))]
    assert winner(match(msg(mentioned=True), bindings)) == "support"


def test_naming_the_conversation_beats_naming_the_sender():
    bindings = [rule("alice", allow_senders=("U1",)),
                rule("support", order=1, allow_conversations=("C1",))]
    assert winner(match(msg(mentioned=True), bindings)) == "support"


def test_allow_senders_beats_no_allowlist():
    bindings = [rule("general"), rule("alice", order=1, allow_senders=("U1",))]
    assert winner(match(msg(mentioned=True), bindings)) == "alice"
    assert winner(match(msg(kind="dm", conversation="D1"), bindings)) == "alice"


def test_allow_senders_pattern_counts_as_naming_the_sender():
    bindings = [rule("general"), rule("acme", order=1, allow_senders=("*@acme.com",))]
    assert winner(match(msg(kind="dm", sender="bob@acme.com"), bindings)) == "acme"


def test_listed_channel_beats_mention_when_both_name_the_conversation():
    bindings = [rule("by-mention", allow_conversations=("C1",)),
                rule("by-channel", order=1, channels=("C1",), mentions=False)]
    result = match(msg(mentioned=True), bindings)
    assert winner(result) == "by-channel"
    assert "every message in C1" in result.reason


def test_mention_beats_followed_thread():
    bindings = [rule("follower", follow_threads=True, mentions=False),
                rule("mentioned", order=1)]
    result = match(msg(thread="1.0", mentioned=True), bindings, frozenset({"follower"}))
    assert winner(result) == "mentioned"
    assert result.reason.endswith("(more specific than follower)")


def test_dm_and_mention_rank_alike_so_file_order_decides():
    bindings = [rule("first", order=0, follow_threads=True), rule("second", order=1)]
    assert winner(match(msg(mentioned=True), bindings)) == "first"
    assert winner(match(msg(kind="dm", conversation="D1"), bindings)) == "first"


def test_file_order_is_the_order_field_not_the_position():
    early, late = rule("early", order=0), rule("late", order=5)
    assert winner(match(msg(mentioned=True), [late, early])) == "early"
    assert winner(match(msg(mentioned=True), [early, late])) == "early"


# --- properties --------------------------------------------------------------------------------

CONVERSATIONS = ("C1", "C2", "D1", "G1")
SENDERS = ("U1", "U2", "u1", "bob@acme.com", "Eve@ACME.com", "eve@other.org")
PATTERNS = ("U1", "u2", "*@acme.com", "*@ACME.COM", "*")
KIND_RANK = {"channel": 0, "dm": 1, "mention": 1, "thread": 2}


def _admits(pattern: str, sender: str) -> bool:
    """The documented pattern semantics, spelled out for the patterns drawn here."""
    if pattern == "*":
        return True
    if pattern.startswith("*@"):
        return sender.lower().endswith(pattern[1:].lower())
    return sender.lower() == pattern.lower()


def _activations(message: InboundMessage, b: Binding, replied: frozenset[str]) -> set[str]:
    ways = set()
    if message.conversation in b.channels:
        ways.add("channel")
    if message.kind == "dm":
        # dm: false means the binding does not answer direct messages, mention or not
        if b.dm:
            ways.add("dm")
        return ways
    if b.mentions and message.mentioned:
        ways.add("mention")
    if b.follow_threads and message.thread and b.name in replied:
        ways.add("thread")
    return ways


def _qualifies(message: InboundMessage, b: Binding, replied: frozenset[str]) -> bool:
    return (
        b.account == message.account
        and (not b.allow_conversations or message.conversation in b.allow_conversations)
        and (not b.allow_senders or any(_admits(p, message.sender) for p in b.allow_senders))
        and bool(_activations(message, b, replied))
    )


def _precedence(message: InboundMessage, b: Binding, replied: frozenset[str]) -> tuple:
    names_conversation = message.conversation in (*b.channels, *b.allow_conversations)
    best_activation = min(KIND_RANK[k] for k in _activations(message, b, replied))
    return (not names_conversation, not b.allow_senders, best_activation, b.order)


# Most bindings and messages share an account and allowlists are often empty, so that many
# draws have several qualifying bindings and every precedence level gets to break a tie.
some_account = st.sampled_from(("a1", "a1", "a1", "a2"))
conversation_list = st.lists(st.sampled_from(CONVERSATIONS), max_size=2, unique=True).map(tuple)
pattern_list = st.lists(st.sampled_from(PATTERNS), max_size=2, unique=True).map(tuple)
maybe_conversations = st.one_of(st.just(()), conversation_list)
maybe_patterns = st.one_of(st.just(()), pattern_list)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[InboundMessage, list[Binding], frozenset[str]]:
    count = draw(st.integers(0, 7))
    orders = draw(st.permutations(range(count)))
    bindings = [
        Binding(
            name=f"b{i}", agent="agent", account=draw(some_account),
            dm=draw(st.booleans()), mentions=draw(st.booleans()),
            channels=draw(conversation_list),
            allow_senders=draw(maybe_patterns),
            allow_conversations=draw(maybe_conversations),
            follow_threads=draw(st.booleans()),
            order=orders[i],
        )
        for i in range(count)
    ]
    kind = draw(st.sampled_from(["dm", "group", "channel"]))
    message = InboundMessage(
        provider="slack", account=draw(some_account), event_id="Ev1",
        conversation=draw(st.sampled_from(CONVERSATIONS)), kind=kind,
        sender=draw(st.sampled_from(SENDERS)), text="hi", message_id="1.1",
        thread=draw(st.sampled_from([None, "T1"])), mentioned=draw(st.booleans()),
    )
    names = [b.name for b in bindings]
    replied = draw(st.one_of(st.just(frozenset(names)),
                             st.frozensets(st.sampled_from(names or ["none"]))))
    return message, bindings, replied


@FAST
@given(scenarios())
def test_a_match_is_on_the_account_admitted_and_activated(scenario):
    message, bindings, replied = scenario
    result = match(message, bindings, replied)
    if isinstance(result, Match):
        chosen = result.binding
        assert chosen in bindings
        assert chosen.account == message.account
        assert _qualifies(message, chosen, replied)
        assert result.reason.startswith(f"binding {chosen.name} matched: ")


@FAST
@given(scenarios())
def test_something_qualifies_exactly_when_there_is_a_match(scenario):
    message, bindings, replied = scenario
    result = match(message, bindings, replied)
    qualifying = [b for b in bindings if _qualifies(message, b, replied)]
    if qualifying:
        assert isinstance(result, Match), (result, qualifying)
        return
    assert isinstance(result, NoMatch), result
    assert result.reason
    on_account = [b for b in bindings if b.account == message.account]
    if not on_account:
        assert result.reason == f"no binding uses account {message.account}"
    for b in on_account:
        assert f"binding {b.name}" in result.reason


@FAST
@given(scenarios())
def test_the_winner_is_the_most_specific_and_names_the_others(scenario):
    message, bindings, replied = scenario
    qualifying = [b for b in bindings if _qualifies(message, b, replied)]
    if not qualifying:
        return
    result = match(message, bindings, replied)
    expected = min(qualifying, key=lambda b: _precedence(message, b, replied))
    assert winner(result) == expected.name
    others = [b.name for b in qualifying if b is not expected]
    if others:
        beaten = result.reason.rsplit("(more specific than ", 1)[1].rstrip(")")
        assert sorted(beaten.split(", ")) == sorted(others)
    else:
        assert "more specific than" not in result.reason


@FAST
@given(scenarios(), st.randoms(use_true_random=False))
def test_match_is_deterministic_and_ignores_list_position(scenario, rnd: random.Random):
    message, bindings, replied = scenario
    first = match(message, bindings, replied)
    assert match(message, bindings, replied) == first
    assert match(message, tuple(bindings), replied) == first
    assert match(message, iter(bindings), replied) == first
    shuffled = list(bindings)
    rnd.shuffle(shuffled)
    again = match(message, shuffled, replied)
    assert type(again) is type(first)
    if isinstance(first, Match):
        assert again.binding == first.binding


@FAST
@given(scenarios(), st.text(min_size=1, max_size=20))
def test_ignore_reason_always_wins(scenario, why):
    message, bindings, replied = scenario
    assert match(replace(message, ignore_reason=why), bindings, replied) == NoMatch(why)


def test_mail_to_an_agents_inbox_reaches_only_that_agents_binding():
    from channels.messages import InboundMessage
    from channels.rules import Binding, Match, NoMatch, match

    first = Binding(name="a-mail", agent="alpha", account="mail", order=0)
    second = Binding(name="b-mail", agent="beta", account="mail", order=1)
    mail = InboundMessage(provider="email", account="mail", event_id="e1",
                          conversation="beta@agents.test", kind="dm", sender="x@acme.com",
                          text="hi", for_agent="beta")
    decision = match(mail, [first, second])
    assert isinstance(decision, Match) and decision.binding is second
    lonely = match(mail, [first])
    assert isinstance(lonely, NoMatch)
    assert lonely.reason == ("beta@agents.test belongs to agent beta; binding a-mail is for "
                             "agent alpha")

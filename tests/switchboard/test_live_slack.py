"""Live replies in Slack, end to end: the thread status (or the acknowledgement reaction) while
the agent works, the answer streamed into the thread, and exactly one complete final message
under faults at the start, an append and the stop."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from conftest import OPERATORS_YAML, SIGNING_SECRET, ServeProcess, slack_message, slack_signature
from fakes.agents import FakeOpenAI

TOKENS = [f"word{i} " for i in range(24)]
REPLY = "".join(TOKENS)


@pytest.fixture
def model():
    with FakeOpenAI(delay=0.02) as server:
        server.tokens = TOKENS
        yield server


def config(api_url: str, model_url: str, account: str = "") -> str:
    return f"""
agents:
  helper: {{handler: openai, base_url: '{model_url}/v1', timeout: 5s}}
accounts:
  slack-acme:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {SIGNING_SECRET}
    api_url: "{api_url}"
    edit_interval: 100ms
    pacing: {{conversation: 50/s}}{account}
bindings:
  - {{agent: helper, account: slack-acme}}
delivery: {{backoff: 100ms, max_backoff: 300ms}}
"""


def mention(server, text: str = "<@UBOT> explain", channel: str = "C0SUPPORT"
            ) -> dict[str, Any]:
    event = slack_message(text, etype="app_mention", channel=channel)
    turn_id = server.slack_event("slack-acme", event).json()["turn_id"]
    return server.wait_turn(turn_id, lambda t: t["status"] != "pending"
                            or t["delivery_status"] == "failed", timeout=15)


def names(turn: dict[str, Any]) -> list[str]:
    return [e["name"] for e in turn["events"]]


def event(turn: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in turn["events"] if e["name"] == name)


def test_the_answer_streams_into_the_thread_and_ends_as_one_message(serve, fake_slack, model):
    server = serve(config(fake_slack.api_url, model.url))
    turn = mention(server)
    assert turn["status"] == "delivered", turn
    assert turn["reply_text"] == REPLY
    [shown] = fake_slack.visible("C0SUPPORT")
    assert shown["text"] == REPLY and not shown["streaming"]
    start = fake_slack.method_calls("chat.startStream")[0]
    assert shown["thread_ts"] == start["thread_ts"] == turn["message_id"]
    assert start["recipient_user_id"] == "U0ALICE" and start["recipient_team_id"] == "T1"
    appends = fake_slack.method_calls("chat.appendStream")
    # 24 tokens over ~0.5 s, at most one append per 100 ms, coalesced
    assert 1 <= len(appends) <= 8
    assert len(fake_slack.method_calls("chat.stopStream")) == 1
    assert fake_slack.posts == []  # no second, complete message
    story = ("working", "stream.started", "agent_replied", "delivered", "stream.finished")
    assert [n for n in names(turn) if n in story] == list(story)
    assert event(turn, "working")["detail"]["shown"] == "status"
    assert event(turn, "stream.finished")["detail"]["updates"] == len(appends)
    status = fake_slack.method_calls("assistant.threads.setStatus")
    assert status[0]["thread_ts"] == start["thread_ts"] and status[0]["status"]
    metrics = server.http.get("/metrics").text
    assert 'switchboard_live_streams_total{outcome="finished",provider="slack"} 1.0' in metrics
    assert 'switchboard_working_indicator_calls_total{how="status",provider="slack"}' in metrics


def test_where_slack_refuses_streams_and_status_it_posts_updates_and_reacts(
        serve, fake_slack, model):
    fake_slack.refuse_streams = "not_allowed"
    fake_slack.refuse_status = "missing_scope"
    server = serve(config(fake_slack.api_url, model.url))
    turn = mention(server)
    assert turn["status"] == "delivered", turn
    [shown] = fake_slack.visible("C0SUPPORT")
    assert shown["text"] == REPLY and len(fake_slack.posts) == 1
    assert 1 <= len(fake_slack.method_calls("chat.update")) <= 9
    started = event(turn, "stream.started")["detail"]
    assert started["mode"] == "edit"
    assert event(turn, "working")["detail"]["shown"] == "reaction"
    added = fake_slack.method_calls("reactions.add")[0]
    assert added["name"] == "eyes" and added["timestamp"] == turn["message_id"]
    # removed after the reply
    assert fake_slack.reactions == set()
    assert len(fake_slack.method_calls("reactions.remove")) == 1


def test_streaming_off_posts_one_message_as_before(serve, fake_slack, model):
    server = serve(config(fake_slack.api_url, model.url, "\n    streaming: false"
                                                         "\n    typing: false"))
    turn = mention(server)
    assert turn["status"] == "delivered"
    assert [p["text"] for p in fake_slack.posts] == [REPLY]
    assert fake_slack.method_calls("chat.startStream") == []
    assert fake_slack.method_calls("assistant.threads.setStatus") == []


FAULTS: list[tuple[str, str, Any]] = [
    ("chat.startStream", "429", 1),
    ("chat.startStream", "error", "internal_error"),
    ("chat.startStream", "lost", None),
    ("chat.appendStream", "429", 1),
    ("chat.appendStream", "error", "ratelimited"),
    ("chat.appendStream", "lost", None),
    ("chat.stopStream", "error", "internal_error"),
    ("chat.stopStream", "429", 1),
    ("chat.stopStream", "lost", None),
    ("chat.stopStream", "deleted", None),
    ("chat.update", "deleted", None),
]


def complete_messages(fake, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.visible(channel) if m["text"] == REPLY]


FAULT_SETS = [[fault] for fault in FAULTS[:3]] + [
    random.Random(seed).sample(FAULTS, 3) for seed in range(4)] + [
    [("chat.postMessage+refused", "lost", None)]]  # streams refused, the post unanswered


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the provider's side
def test_any_faults_end_with_one_complete_message_and_no_open_stream(serve, fake_slack, model):
    """Property: whatever fails where, the thread ends with exactly one complete message
    equal to the transcript's reply, and no stream left open (one conversation per fault
    sequence, on one server)."""
    server = serve(config(fake_slack.api_url, model.url))
    for index, faults in enumerate(FAULT_SETS):
        channel = f"C0FAULT{index}"
        refused = any(method in ("chat.update", "chat.postMessage+refused")
                      for method, _, _ in faults)
        fake_slack.refuse_streams = "not_allowed" if refused else None
        for method, kind, value in faults:
            fake_slack.fault(method.removesuffix("+refused"), kind, value)
        turn = mention(server, channel=channel)
        assert turn["status"] == "delivered", (faults, turn["events"])
        assert len(complete_messages(fake_slack, channel)) == 1, (faults, fake_slack.visible())
        assert not any(m["streaming"] for m in fake_slack.visible(channel)), faults
        session = server.api("GET", f"/api/sessions/{turn['session_id']}").json()
        assert [m["text"] for m in session["transcript"] if m["role"] == "agent"] == [REPLY]
        ended = [n for n in names(turn) if n in ("stream.finished", "stream.failed")]
        assert ended or "stream.started" not in names(turn), faults
        with fake_slack._lock:
            fake_slack._faults.clear()
    # a reply longer than a stream holds (12,000 characters) continues in a new message
    fake_slack.refuse_streams = None
    model.tokens = [f"part {i} " + "y" * 500 + "\n\n" for i in range(30)]
    turn = mention(server, channel="C0LONG")
    assert turn["status"] == "delivered", turn["events"]
    shown = fake_slack.visible("C0LONG")
    assert len(shown) == 2 and len(shown[0]["text"]) <= 12_000
    assert not any(m["streaming"] for m in shown)
    assert shown[0]["text"].endswith("y") and shown[1]["text"].startswith("part")
    assert "\n\n".join(m["text"] for m in shown).rstrip() == turn["reply_text"].rstrip()


def test_an_agent_failing_mid_stream_stops_the_stream_and_the_status(serve, fake_slack,
                                                                     model):
    model.break_after = 8
    server = serve(config(fake_slack.api_url, model.url))
    turn = mention(server)
    assert turn["status"] == "failed"
    assert not any(m["streaming"] for m in fake_slack.visible())
    assert len(fake_slack.method_calls("chat.stopStream")) == 1
    assert fake_slack.posts == []
    failed = event(turn, "stream.failed")["detail"]
    assert "closed" in failed["fallback"]
    # the status is cleared (no reply came to clear it)
    assert fake_slack.method_calls("assistant.threads.setStatus")[-1]["status"] == ""


def test_a_process_killed_mid_stream_is_finished_once_by_the_next(tmp_path, sqlite_url,
                                                                  fake_slack, model):
    """SIGKILL while the answer streams: the restarted process answers the turn again and
    finishes the message the dead one started (its stream stopped), instead of a second one;
    the timeline says so."""
    model.delay = 0.1
    path = tmp_path / "bindings.yaml"
    path.write_text(config(fake_slack.api_url, model.url).replace(
        "delivery: {backoff: 100ms, max_backoff: 300ms}",
        "delivery: {lease: 2s, worker_timeout: 1s, backoff: 100ms}") + OPERATORS_YAML)
    first = ServeProcess(path, sqlite_url, tmp_path)
    event = slack_message("<@UBOT> explain", etype="app_mention", channel="C0KILL")
    body = json.dumps({"type": "event_callback", "team_id": "T1", "event_id": "EvKILL1",
                       "event": event}).encode()
    turn_id = first.http.post("/slack/slack-acme/events", content=body, headers={
        **slack_signature(body), "Content-Type": "application/json"}).json()["turn_id"]
    deadline = time.time() + 10
    while len(fake_slack.method_calls("chat.appendStream")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    first.kill()
    first.stop()
    [open_stream] = fake_slack.visible("C0KILL")
    assert open_stream["streaming"] and open_stream["text"] != REPLY
    second = ServeProcess(path, sqlite_url, tmp_path)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            turn = second.api("GET", f"/api/turns/{turn_id}").json()
            if turn["status"] != "pending":
                break
            time.sleep(0.2)
    finally:
        second.stop()
    assert turn["status"] == "delivered", turn["events"]
    [shown] = fake_slack.visible("C0KILL")
    assert shown["ts"] == open_stream["ts"] and shown["text"] == REPLY
    assert not shown["streaming"] and fake_slack.posts == []
    story = [e["name"] for e in turn["events"]]
    assert story.index("recovered") < story.index("stream.resumed") < story.index("delivered")
    assert story.count("stream.started") == 1

"""Agent handlers through the whole pipeline: the user's own HTTP agent and an
OpenAI-compatible model server (streaming), with transcript context and model routes."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conftest import OPERATOR, SIGNING_SECRET, VIEWER, read_sse
from fakes.agents import FakeOpenAI, HTTPAgent


@pytest.fixture
def http_agent():
    with HTTPAgent() as agent:
        yield agent


@pytest.fixture
def model_server():
    with FakeOpenAI("Hello from the model") as server:
        yield server


def config(api_url: str, agent: str, binding_model: str = "") -> str:
    model = f"\n    model: {binding_model}" if binding_model else ""
    return f"""
agents:
{agent}
accounts:
  slack-acme: {{provider: slack, bot_token: xoxb-test, signing_secret: {SIGNING_SECRET},
               api_url: "{api_url}"}}
bindings:
  - name: helpdesk-slack
    agent: helpdesk
    account: slack-acme{model}
"""


def dm(server, text: str) -> dict[str, Any]:
    from conftest import slack_message

    event = slack_message(text, channel="D0ALICE", channel_type="im")
    return server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])


def test_http_agent_gets_turn_transcript_and_route_and_its_activity_is_kept(
        serve, fake_slack, http_agent):
    agent = f"  helpdesk: {{handler: http, url: '{http_agent.url}/turn', model: small}}"
    server = serve(config(fake_slack.api_url, agent, binding_model="large"))
    first = dm(server, "first question")
    assert first["status"] == "delivered", first
    assert first["reply_text"] == "agent says: first question (model large)"
    second = dm(server, "second question")
    request = http_agent.requests[-1]
    assert request["turn"]["id"] == second["id"] and request["model"] == "large"
    assert request["session"]["id"] == second["session_id"]
    assert request["session"]["context"] == {"turns": 1}
    assert [m["text"] for m in request["transcript"] if m["role"] in ("user", "agent")] == [
        "first question", "agent says: first question (model large)"]
    session = server.api("GET", f"/api/sessions/{second['session_id']}").json()
    assert session["context"] == {"turns": 2}
    activity = [e for e in session["transcript"] if e["role"] == "activity"]
    assert [a["data"]["type"] for a in activity] == ["reasoning", "tool_call"] * 2
    assert activity[1]["data"]["name"] == "lookup"


@pytest.mark.parametrize(("mode", "words"), [
    ("error", "answered HTTP 502: upstream exploded"),
    ("not_json", "not JSON"),
    ("stall", "did not answer within 1s"),
])
def test_http_agent_failures_fail_the_turn_with_a_reason(serve, fake_slack, http_agent, mode,
                                                         words):
    agent = f"  helpdesk: {{handler: http, url: '{http_agent.url}/turn', timeout: 1s}}"
    server = serve(config(fake_slack.api_url, agent))
    http_agent.mode = mode
    turn = dm(server, "help")
    assert turn["status"] == "failed"
    assert words in turn["error"]
    assert "agent_failed" in [e["name"] for e in turn["events"]]
    assert fake_slack.posts == []


def test_openai_handler_streams_with_history_and_model_precedence(serve, fake_slack,
                                                                  model_server, monkeypatch):
    monkeypatch.setenv("HELPDESK_KEY", "sk-test")
    agent = (f"  helpdesk: {{handler: openai, base_url: '{model_server.url}/v1', "
             "api_key: '${HELPDESK_KEY}', model: agent-default, "
             "system_prompt: 'You are terse.'}")
    server = serve(config(fake_slack.api_url, agent, binding_model="binding-route"))
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    threading.Thread(target=read_sse, args=(f"{server.url}/api/events", VIEWER, seen, stop),
                     daemon=True).start()
    time.sleep(0.3)
    first = dm(server, "hi")
    assert first["status"] == "delivered"
    assert first["reply_text"] == "Hello from the model "
    call = model_server.requests[-1]
    assert call["auth"] == "Bearer sk-test"
    assert call["body"]["model"] == "binding-route"
    assert call["body"]["messages"][0] == {"role": "system", "content": "You are terse."}
    deltas = [e["data"]["delta"] for e in seen if e["event"] == "generation.delta"]
    stop.set()
    assert "".join(deltas) == "Hello from the model "
    # the session's own model wins over the binding's route
    sid = first["session_id"]
    assert server.api("POST", f"/api/sessions/{sid}/model", json={"model": "override"},
                      token=OPERATOR).status_code == 200
    dm(server, "again")
    call = model_server.requests[-1]
    assert call["body"]["model"] == "override"
    assert [m["role"] for m in call["body"]["messages"]] == [
        "system", "user", "assistant", "user"]
    assert call["body"]["messages"][1]["content"] == "hi"


def test_an_agent_reply_with_text_no_database_stores_is_cleaned_and_delivered(
        serve, fake_slack, http_agent):
    """A lone surrogate or NUL in the agent's JSON (valid JSON, unstorable text) must not leave
    the turn stuck: it is stored and delivered with U+FFFD in their place."""
    agent = f"  helpdesk: {{handler: http, url: '{http_agent.url}/turn'}}"
    server = serve(config(fake_slack.api_url, agent))
    http_agent.mode = "raw"
    http_agent.raw_answer = (b'{"reply": "half \\ud800 and nul \\u0000 end", '
                             b'"activity": [{"type": "reasoning", "text": "x\\udfff"}], '
                             b'"context": {"k\\ud800": "v\\u0000"}}')
    turn = dm(server, "hello")
    assert turn["status"] == "delivered", turn
    assert turn["reply_text"] == "half \ufffd and nul \ufffd end"
    assert fake_slack.posts[-1]["text"] == "half \ufffd and nul \ufffd end"

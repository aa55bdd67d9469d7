"""Interactions in Slack: Block Kit buttons, `block_actions` posted to the Interactivity
request URL (form-encoded `payload=`, signed like events), a refused click answered 2xx with
an ephemeral message, the buttons replaced by the decision with chat.update."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from conftest import SIGNING_SECRET, slack_config, slack_message, slack_signature
from fakes.agents import ScriptedAgent, asks_approval


def config(api_url: str, agent_url: str) -> str:
    return slack_config(api_url,
                        agents={"helpdesk": {"handler": "http", "url": f"{agent_url}/turn"}},
                        agent="helpdesk", channels=["C0SUPPORT"])


def wait_for(check: Any, timeout: float = 6.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def block_actions(server: Any, prompt: dict[str, Any], button: dict[str, Any],
                  user: str = "U0ALICE", username: str = "ann",
                  secret: str = SIGNING_SECRET) -> Any:
    """What Slack posts to the Interactivity request URL when `button` is clicked."""
    payload = {
        "type": "block_actions", "token": "legacy", "api_app_id": "A1", "trigger_id": "13345.1",
        "user": {"id": user, "username": username, "name": username, "team_id": "T1"},
        "team": {"id": "T1", "domain": "acme"}, "is_enterprise_install": False,
        "container": {"type": "message", "message_ts": prompt["ts"], "channel_id": "C0SUPPORT",
                      "is_ephemeral": False, "thread_ts": prompt.get("thread_ts")},
        "channel": {"id": "C0SUPPORT", "name": "support"},
        "message": {"type": "message", "ts": prompt["ts"], "text": prompt["text"],
                    "blocks": prompt["blocks"], "user": "UBOT", "bot_id": "BBOT"},
        "state": {"values": {}}, "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [{"type": "button", "action_id": button["action_id"],
                     "block_id": "ix", "text": button["text"], "value": button["value"],
                     "action_ts": f"{time.time():.6f}"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return server.http.post("/slack/slack-acme/interactions", content=body, headers={
        **slack_signature(body, secret), "Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture
def agent():
    with ScriptedAgent(asks_approval()) as fake:
        yield fake


def test_an_approval_by_button_in_slack(serve, fake_slack, agent):
    server = serve(config(fake_slack.api_url, agent.url))
    server.slack_event("slack-acme", slack_message("refund 1182 please", ts="1700000000.000100"))
    prompts = wait_for(lambda: [p for p in fake_slack.posts if p.get("blocks")])
    assert prompts, fake_slack.posts
    prompt = prompts[0]
    assert fake_slack.posts[0]["text"] == "Let me check."  # the reply first
    assert prompt["thread_ts"] == "1700000000.000100"
    buttons = next(b for b in prompt["blocks"] if b["type"] == "actions")["elements"]
    assert [(b["text"]["text"], b.get("style")) for b in buttons] == [
        ("Approve", "primary"), ("Reject", "danger")]

    forged = block_actions(server, prompt, buttons[0], secret="not-the-secret")
    assert forged.status_code == 401
    started = time.time()
    refused = block_actions(server, prompt, buttons[1], user="U0MALLORY", username="mallory")
    assert refused.status_code == 200 and time.time() - started < 3
    ephemeral = wait_for(lambda: fake_slack.ephemerals)
    assert ephemeral[0]["user"] == "U0MALLORY"
    assert ephemeral[0]["text"] == "only U0ALICE can answer this"

    # two clicks at once of the responder: one answer, the other changes nothing
    answers = []
    threads = [threading.Thread(target=lambda b=b: answers.append(
        block_actions(server, prompt, b).status_code)) for b in buttons]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200, 200]
    seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
    assert len(seen) == 1
    view = seen[0]["turn"]["interaction"]
    assert view["via"] == "slack" and view["by"] == {"provider": "slack", "id": "U0ALICE",
                                                     "name": "ann"}
    decision = view["option"]
    assert wait_for(lambda: any(p["text"] == f"Decision: {decision}" for p in fake_slack.posts))
    updated = wait_for(lambda: fake_slack.updates)
    assert updated[0]["ts"] == prompt["ts"]
    word = {"approve": "Approved", "reject": "Rejected"}[decision]
    assert f"{word} by @ann at " in json.dumps(updated[0]["blocks"])
    assert not any(b["type"] == "actions" for b in updated[0]["blocks"])
    time.sleep(0.2)
    assert len([r for r in agent.requests if r["turn"].get("interaction")]) == 1
    # the loser of the race was told, alone, who answered first
    assert wait_for(lambda: any(e["text"] == "already answered by @ann"
                                for e in fake_slack.ephemerals))
    item = server.api("GET", "/api/interactions").json()["interactions"][0]
    story = server.api("GET", f"/api/interactions/{item['id']}").json()
    assert [a["accepted"] for a in story["attempts"]].count(True) == 1
    assert len(story["attempts"]) == 3


def test_an_input_is_answered_in_the_thread(serve, fake_slack):
    def script(body: dict[str, Any]) -> dict[str, Any]:
        got = body["turn"].get("interaction")
        if got is None:
            return {"interaction": {"kind": "input", "prompt": "Which account number?"}}
        return {"reply": f"Thanks, {got['text']} ({got['by']['name'] or got['by']['id']})"}

    with ScriptedAgent(script) as agent:
        server = serve(config(fake_slack.api_url, agent.url))
        server.slack_event("slack-acme", slack_message("help me", ts="1700000000.000200"))
        prompt = wait_for(lambda: [p for p in fake_slack.posts if p.get("blocks")])
        assert prompt and "Reply in this thread" in json.dumps(prompt[0]["blocks"])
        assert not any(b["type"] == "actions" for b in prompt[0]["blocks"])
        server.slack_event("slack-acme", slack_message(
            "AC-7781", ts="1700000000.000300", thread_ts="1700000000.000200"))
        seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
        assert seen and seen[0]["turn"]["interaction"]["text"] == "AC-7781"
        assert wait_for(lambda: any(p["text"].startswith("Thanks, AC-7781")
                                    for p in fake_slack.posts))
        assert wait_for(lambda: fake_slack.updates)  # the hint gives way to the answer

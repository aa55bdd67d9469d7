"""Interactions in Slack over Socket Mode: a click arrives as an `interactive` envelope on the
socket (the same `block_actions` JSON the Interactivity request URL gets), is decided by the
same code, and the envelope is acknowledged."""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import slack_message
from fakes.agents import ScriptedAgent, asks_approval


def config(api_url: str, agent_url: str) -> str:
    return f"""
agents:
  helpdesk: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  slack-acme:
    provider: slack
    mode: socket
    bot_token: xoxb-test
    app_token: xapp-1-test
    api_url: {api_url}
bindings:
  - {{agent: helpdesk, account: slack-acme, channels: [C0SUPPORT]}}
"""


def wait_for(check: Any, timeout: float = 8.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def interactive(envelope_id: str, prompt: dict[str, Any], button: dict[str, Any],
                user: str, username: str) -> dict[str, Any]:
    """A Socket Mode `interactive` envelope of a button click (Slack's wire format)."""
    return {"envelope_id": envelope_id, "type": "interactive", "accepts_response_payload": True,
            "payload": {
                "type": "block_actions", "api_app_id": "A1", "token": "legacy",
                "trigger_id": "13345.2", "is_enterprise_install": False,
                "user": {"id": user, "username": username, "name": username, "team_id": "T1"},
                "team": {"id": "T1", "domain": "acme"},
                "container": {"type": "message", "message_ts": prompt["ts"],
                              "channel_id": "C0SUPPORT", "is_ephemeral": False,
                              "thread_ts": prompt.get("thread_ts")},
                "channel": {"id": "C0SUPPORT", "name": "support"},
                "message": {"type": "message", "ts": prompt["ts"], "text": prompt["text"],
                            "user": "UBOT", "bot_id": "BBOT", "blocks": prompt["blocks"]},
                "state": {"values": {}},
                "response_url": "https://hooks.slack.com/actions/T1/2/y",
                "actions": [{"type": "button", "action_id": button["action_id"],
                             "block_id": f"ix|{prompt['ts']}", "text": button["text"],
                             "value": button["value"], "action_ts": f"{time.time():.6f}"}]}}


def test_a_click_over_socket_mode_answers_and_is_acknowledged(serve, fake_slack):
    with ScriptedAgent(asks_approval()) as agent:
        server = serve(config(fake_slack.api_url, agent.url))
        assert wait_for(lambda: fake_slack.socket_connected)
        fake_slack.socket_send({
            "envelope_id": "env-msg", "type": "events_api", "accepts_response_payload": False,
            "retry_attempt": 0, "retry_reason": "",
            "payload": {"type": "event_callback", "team_id": "T1", "event_id": "EvIX1",
                        "event": slack_message("<@UBOT> refund 1182", etype="app_mention",
                                               ts="1700000600.000100")}})
        prompt = wait_for(lambda: [p for p in fake_slack.posts if p.get("blocks")])
        assert prompt, fake_slack.posts
        buttons = next(b for b in prompt[0]["blocks"] if b["type"] == "actions")["elements"]

        fake_slack.socket_send(interactive("env-no", prompt[0], buttons[0], "U0MALLORY",
                                           "mallory"))
        assert wait_for(lambda: fake_slack.ephemerals)
        assert fake_slack.ephemerals[0]["text"] == "only U0ALICE can answer this"
        fake_slack.socket_send(interactive("env-yes", prompt[0], buttons[0], "U0ALICE", "ann"))
        seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
        assert seen and seen[0]["turn"]["interaction"]["option"] == "approve"
        assert seen[0]["turn"]["interaction"]["via"] == "slack"
        acked = {a.get("envelope_id") for a in fake_slack.socket_acks}
        assert wait_for(lambda: {"env-no", "env-yes"} <= {
            a.get("envelope_id") for a in fake_slack.socket_acks}), acked
        updated = wait_for(lambda: fake_slack.updates)
        assert "Approved by @ann at " in json.dumps(updated[0]["blocks"])
        assert wait_for(lambda: any(p["text"] == "Decision: approve" for p in fake_slack.posts))
        item = server.api("GET", "/api/interactions").json()["interactions"][0]
        attempts = server.api("GET", f"/api/interactions/{item['id']}").json()["attempts"]
        assert [(a["by"]["id"], a["accepted"]) for a in attempts] == [
            ("U0MALLORY", False), ("U0ALICE", True)]

"""Socket Mode: the same pipeline, dedupe and records as the Events API, over a websocket."""

from __future__ import annotations

import time

from conftest import slack_message


def socket_config(api_url: str) -> str:
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  slack-acme:
    provider: slack
    mode: socket
    bot_token: xoxb-test
    app_token: xapp-1-test
    api_url: {api_url}
bindings:
  - {{name: triage-slack, agent: triager, account: slack-acme}}
"""


def envelope(event: dict, event_id: str, envelope_id: str, retry: int = 0) -> dict:
    return {"envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": False,
            "retry_attempt": retry, "retry_reason": "timeout" if retry else "",
            "payload": {"type": "event_callback", "team_id": "T1", "event_id": event_id,
                        "event": event}}


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_socket_mode_mention_gets_reply_ack_and_retry_is_duplicate(serve, fake_slack):
    server = serve(socket_config(fake_slack.api_url))
    wait_for(lambda: fake_slack.socket_connected)
    event = slack_message("<@UBOT> over the socket", etype="app_mention",
                          ts="1700000500.000100")
    fake_slack.socket_send(envelope(event, "EvSOCK1", "env-1"))
    wait_for(lambda: len(fake_slack.posts) == 1)
    wait_for(lambda: any(a.get("envelope_id") == "env-1" for a in fake_slack.socket_acks))
    [turn] = server.turns()
    turn = server.wait_turn(turn["id"])
    assert turn["status"] == "delivered"
    assert turn["provider_message_id"] == fake_slack.posts[0]["ts"]
    assert fake_slack.posts[0]["thread_ts"] == "1700000500.000100"
    # Slack retries the envelope: acknowledged again, recorded as a duplicate, no second reply
    fake_slack.socket_send(envelope(event, "EvSOCK1", "env-2", retry=1))
    wait_for(lambda: any(a.get("envelope_id") == "env-2" for a in fake_slack.socket_acks))
    time.sleep(0.3)
    assert len(fake_slack.posts) == 1
    [duplicate] = server.turns(status="duplicate")
    assert duplicate["duplicate_of"] == turn["id"]
    [account] = server.api("GET", "/api/accounts").json()["accounts"]
    assert account["status"] == "connected"

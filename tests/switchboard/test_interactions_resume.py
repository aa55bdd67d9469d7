"""An interaction's reply and prompt are two messages at a provider: when the prompt fails
after the reply went out, the outbox row records that and the retry sends the prompt alone."""

from __future__ import annotations

import time

from fakes.agents import ScriptedAgent, asks_approval

SECRET = "tg-secret_123"


def config(base_url: str, agent_url: str) -> str:
    return f"""
agents:
  helpdesk: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  tg: {{provider: telegram, token: "123:ABC", webhook_secret: {SECRET}, base_url: {base_url}}}
bindings:
  - {{agent: helpdesk, account: tg}}
delivery: {{backoff: 100ms, max_backoff: 200ms}}
"""


def test_a_failed_prompt_is_retried_without_its_reply(serve, fake_telegram):
    with ScriptedAgent(asks_approval(responders=["7"])) as agent:
        server = serve(config(fake_telegram.base_url, agent.url))
        # the reply goes through, the prompt after it meets Telegram's 500 (worth a retry)
        fake_telegram.fail_next("sendMessage", 500, "Internal Server Error", after=1)
        response = server.http.post("/telegram/tg/webhook", headers={
            "X-Telegram-Bot-Api-Secret-Token": SECRET}, json={
            "update_id": 880001, "message": {
                "message_id": 31, "date": int(time.time()),
                "chat": {"id": 42, "type": "private", "first_name": "Alice"},
                "from": {"id": 7, "is_bot": False, "first_name": "Alice",
                         "username": "alice", "language_code": "en"},
                "text": "refund order 1182 please"}})
        assert response.status_code == 200
        [turn] = server.turns()
        done = server.wait_turn(turn["id"], lambda t: t["delivery_status"] == "delivered")
        assert done["delivery_status"] == "delivered", done
        texts = [c["text"] for c in fake_telegram.calls("sendMessage")]
        assert texts == ["Let me check.", "May I refund order 1182?",
                         "May I refund order 1182?"], texts  # the reply once, the prompt twice
        assert fake_telegram.visible(42) == ["Let me check.", "May I refund order 1182?"]
        retried = [e for e in done["events"] if e["name"] == "delivery_retry"]
        assert retried and retried[0]["detail"]["sent_part"] == "reply"
        # the delivered message is the prompt: the one whose buttons the answer replaces
        item = server.api("GET", "/api/interactions").json()["interactions"][0]
        story = server.api("GET", f"/api/interactions/{item['id']}").json()
        assert story["prompt_message_id"] == done["provider_message_id"]
        assert agent.requests

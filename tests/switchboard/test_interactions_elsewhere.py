"""An answer given from the CLI (another process, writing to the database) is noticed by every
running `serve` through the shared live events: one of them hands it to the agent at once and
replaces the prompt's buttons at the provider, once, and each streams `interaction.answered`."""

from __future__ import annotations

import time
from typing import Any

from typer.testing import CliRunner

from conftest import VIEWER, sse_events
from fakes.agents import ScriptedAgent, asks_approval
from switchboard.cli import app

SECRET = "tg-secret_123"


def config(base_url: str, agent_url: str) -> str:
    return f"""
agents:
  helpdesk: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  tg: {{provider: telegram, token: "123:ABC", webhook_secret: {SECRET}, base_url: {base_url}}}
bindings:
  - {{agent: helpdesk, account: tg}}
"""


def wait_for(check: Any, timeout: float = 8.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def test_a_cli_answer_settles_the_buttons_once_and_is_streamed(serve, fake_telegram,
                                                                database_url, monkeypatch):
    def script(body: dict[str, Any]) -> dict[str, Any]:
        if body["turn"].get("interaction"):
            return asks_approval()(body)  # "Decision: approve"
        return {"interaction": {"kind": "approval", "prompt": "May I refund order 1182?",
                                "responders": ["7"]}}  # no reply before it: one message

    with ScriptedAgent(script) as agent:
        first = serve(config(fake_telegram.base_url, agent.url))
        second = serve(config(fake_telegram.base_url, agent.url))  # both follow the database
        response = first.http.post("/telegram/tg/webhook", headers={
            "X-Telegram-Bot-Api-Secret-Token": SECRET}, json={
            "update_id": 990001, "message": {
                "message_id": 51, "date": int(time.time()),
                "chat": {"id": 42, "type": "private", "first_name": "Alice"},
                "from": {"id": 7, "is_bot": False, "first_name": "Alice",
                         "username": "alice", "language_code": "en"},
                "text": "refund order 1182 please"}})
        assert response.status_code == 200
        prompt = wait_for(lambda: [c for c in fake_telegram.calls("sendMessage")
                                   if "reply_markup" in c])
        assert prompt, fake_telegram.calls("sendMessage")
        item = first.api("GET", "/api/interactions").json()["interactions"][0]
        assert wait_for(lambda: first.api("GET", f"/api/interactions/{item['id']}").json()[
            "prompt_message_id"])

        monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", database_url)
        answered = CliRunner().invoke(app, ["interactions", "answer", item["id"], "1"])
        assert answered.exit_code == 0, answered.output
        started = time.time()
        # the agent hears it at once (not at the next recovery heartbeat), from one process
        seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
        assert seen and time.time() - started < 4
        assert seen[0]["turn"]["interaction"]["by"] == {"operator": "cli"}
        assert wait_for(lambda: any(c["text"] == "Decision: approve"
                                    for c in fake_telegram.calls("sendMessage")))
        edits = wait_for(lambda: fake_telegram.calls("editMessageReplyMarkup"))
        story = first.api("GET", f"/api/interactions/{item['id']}").json()
        assert edits and str(edits[0]["message_id"]) == story["prompt_message_id"]
        shown = wait_for(lambda: fake_telegram.calls("editMessageText"))
        assert "Approved by @cli at " in shown[0]["text"]

        def answered_on(server: Any) -> dict[str, Any]:
            for event in sse_events(server.url + "/api/events", VIEWER, last_event_id="0"):
                if event["event"] == "interaction.answered":
                    return event
            raise AssertionError("no interaction.answered")

        for server in (first, second):  # each streams it (read back from its event buffer)
            event = answered_on(server)
            assert event["data"]["interaction_id"] == item["id"]
            assert event["data"]["answer"]["option"] == "approve"
        time.sleep(0.6)  # both processes have read the shared event by now: still once
        assert len(fake_telegram.calls("editMessageReplyMarkup")) == 1
        assert len([r for r in agent.requests if r["turn"].get("interaction")]) == 1

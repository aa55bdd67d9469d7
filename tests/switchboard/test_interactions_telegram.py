"""Interactions in Telegram: an inline keyboard, clicks as `callback_query` updates answered
with answerCallbackQuery, the keyboard removed with editMessageReplyMarkup; an `input` answered
by the next message (ForceReply)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from fakes.agents import ScriptedAgent, asks_approval

_ids = itertools.count(5000)
SECRET = "tg-secret_123"


def message(text: str, user_id: int = 7) -> dict[str, Any]:
    return {"message_id": next(_ids), "date": int(time.time()),
            "chat": {"id": 42, "type": "private", "first_name": "Alice"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Alice",
                     "username": "alice"}, "text": text}


def update(msg: dict[str, Any]) -> dict[str, Any]:
    return {"update_id": next(_ids), "message": msg}


def post(server: Any, body: dict[str, Any]) -> Any:
    return server.http.post("/telegram/tg/webhook", json=body,
                            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})


def config(base_url: str, agent_url: str, mode: str = "webhook") -> str:
    return f"""
agents:
  helpdesk: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  tg:
    provider: telegram
    token: "123:ABC"
    webhook_secret: {SECRET}
    base_url: {base_url}
    mode: {mode}
    poll_timeout: 1
bindings:
  - agent: helpdesk
    account: tg
"""


def wait_for(check: Any, timeout: float = 6.0) -> Any:
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def callback_update(prompt: dict[str, Any], data: str, user_id: int = 7,
                    username: str = "alice") -> dict[str, Any]:
    """A callback_query update as Telegram sends it for a button of `prompt` (a sent Message)."""
    return {"update_id": next(_ids), "callback_query": {
        "id": f"{next(_ids)}0000000042", "chat_instance": "-5822949452012396066",
        "from": {"id": user_id, "is_bot": False, "first_name": username.title(),
                 "username": username, "language_code": "en"},
        "message": {"message_id": prompt["message_id"], "date": int(time.time()),
                    "chat": {"id": 42, "type": "private", "first_name": "Alice"},
                    "from": {"id": 999, "is_bot": True, "first_name": "Switchboard",
                             "username": "switchboard_bot"},
                    "text": prompt["text"], "reply_markup": prompt["reply_markup"]},
        "data": data}}


def click(server: Any, prompt: dict[str, Any], data: str, user_id: int = 7,
          username: str = "alice") -> Any:
    response = post(server, callback_update(prompt, data, user_id, username))
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def agent():
    with ScriptedAgent(asks_approval(responders=["7"])) as fake:
        yield fake


def test_an_approval_by_button_reaches_the_agent_and_the_keyboard_goes(serve, fake_telegram,
                                                                       agent):
    server = serve(config(fake_telegram.base_url, agent.url))
    post(server, update(message("refund order 1182 please")))
    sent = wait_for(lambda: [c for c in fake_telegram.calls("sendMessage")
                             if "reply_markup" in c])
    assert sent, fake_telegram.calls("sendMessage")
    texts = [c["text"] for c in fake_telegram.calls("sendMessage")]
    assert texts[:2] == ["Let me check.", "May I refund order 1182?"]  # the reply first
    keyboard = sent[0]["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in row] for row in keyboard] == [["Approve"], ["Reject"]]
    data = [row[0]["callback_data"] for row in keyboard]
    assert all(len(d.encode()) <= 64 for d in data)
    prompt = {"message_id": 2, "text": sent[0]["text"], "reply_markup": sent[0]["reply_markup"]}

    # someone who may not answer: a toast saying who may, nothing decided, the attempt recorded
    click(server, prompt, data[1], user_id=8, username="mallory")
    toasts = wait_for(lambda: fake_telegram.calls("answerCallbackQuery"))
    assert toasts[0]["text"] == "only 7 can answer this"
    # the responder, twice (a double click): one answer
    click(server, prompt, data[0])
    click(server, prompt, data[0])
    toasts = wait_for(lambda: len(fake_telegram.calls("answerCallbackQuery")) == 3
                      and fake_telegram.calls("answerCallbackQuery"))
    assert toasts[1]["text"].startswith("Approved by @alice at ")
    assert toasts[2]["text"] == "already answered by @alice"

    seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
    assert len(seen) == 1
    view = seen[0]["turn"]["interaction"]
    assert view["option"] == "approve" and view["via"] == "telegram"
    assert view["by"] == {"provider": "telegram", "id": "7", "name": "alice"}
    assert wait_for(lambda: any(c["text"] == "Decision: approve"
                                for c in fake_telegram.calls("sendMessage")))
    edits = wait_for(lambda: fake_telegram.calls("editMessageReplyMarkup"))
    assert edits and edits[0]["message_id"] == 2 and not edits[0].get("reply_markup")
    shown = wait_for(lambda: fake_telegram.calls("editMessageText"))
    assert "Approved by @alice at " in shown[0]["text"]
    item = server.api("GET", "/api/interactions").json()["interactions"][0]
    story = server.api("GET", f"/api/interactions/{item['id']}").json()
    assert story["prompt_message_id"] == "2"
    assert [(a["by"]["id"], a["accepted"]) for a in story["attempts"]] == [
        ("8", False), ("7", True), ("7", False)]


def test_an_input_takes_the_next_message_of_the_responder(serve, fake_telegram):
    def script(body: dict[str, Any]) -> dict[str, Any]:
        got = body["turn"].get("interaction")
        if got is None:
            return {"interaction": {"kind": "input", "prompt": "What is your account number?"}}
        return {"reply": f"Thanks, account {got['text']}"}

    with ScriptedAgent(script) as agent:
        server = serve(config(fake_telegram.base_url, agent.url))
        post(server, update(message("I need help")))
        sent = wait_for(lambda: fake_telegram.calls("sendMessage"))
        assert sent[0]["text"] == "What is your account number?"
        assert sent[0]["reply_markup"]["force_reply"] is True
        post(server, update(message("AC-7781")))
        seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
        assert seen and seen[0]["turn"]["interaction"]["text"] == "AC-7781"
        assert seen[0]["turn"]["text"] == "AC-7781"
        assert wait_for(lambda: any(c["text"] == "Thanks, account AC-7781"
                                    for c in fake_telegram.calls("sendMessage")))
        assert json.dumps(server.api("GET", "/api/interactions").json()).count("answered") >= 1


def test_a_click_read_by_long_polling_and_a_malformed_one(serve, fake_telegram, agent):
    server = serve(config(fake_telegram.base_url, agent.url, mode="polling"))
    fake_telegram.push_update(update(message("refund order 1182 please")))
    sent = wait_for(lambda: [c for c in fake_telegram.calls("sendMessage")
                             if "reply_markup" in c])
    assert sent, fake_telegram.calls("sendMessage")
    data = sent[0]["reply_markup"]["inline_keyboard"][1][0]["callback_data"]
    prompt = {"message_id": 2, "text": sent[0]["text"], "reply_markup": sent[0]["reply_markup"]}
    broken = callback_update(prompt, data)
    del broken["callback_query"]["from"]  # not one Telegram sends: skipped, nothing decided
    fake_telegram.push_update(broken)
    fake_telegram.push_update(callback_update(prompt, data))
    seen = wait_for(lambda: [r for r in agent.requests if r["turn"].get("interaction")])
    assert seen and seen[0]["turn"]["interaction"]["option"] == "reject"
    assert wait_for(lambda: fake_telegram.calls("answerCallbackQuery"))[0]["text"].startswith(
        "Rejected by @alice")
    item = server.api("GET", "/api/interactions").json()["interactions"][0]
    attempts = server.api("GET", f"/api/interactions/{item['id']}").json()["attempts"]
    assert [a["accepted"] for a in attempts] == [True]

"""The person who owns a session controls it from the chat: `/end`, `/new`, `/pause`,
`/resume`, `/agents`, `/transfer NAME` (Telegram commands, Slack's slash command); nobody
else in the conversation can, and every move names the person who made it."""

from __future__ import annotations

import itertools
import time
from typing import Any

from conftest import Server, slack_config, slack_message, slack_signature

SECRET = "tg-secret_123"
BOT = "@switchboard_bot"
ALICE, BOB = 7, 8
_ids = itertools.count(5000)

TELEGRAM = """
agents:
  triager: {handler: echo}
  helper: {handler: echo}
accounts:
  tg: {provider: telegram, token: "123:ABC", webhook_secret: SECRET, base_url: BASE}
bindings:
  - {name: group, agent: triager, account: tg, transfer_to: [helper]}
"""


def say(server: Server, text: str, user: int = ALICE) -> dict[str, Any]:
    """A group message addressed to the bot (`/cmd@bot` or an @-mention), answered."""
    command = text.startswith("/")
    if command:
        name, _, rest = text.partition(" ")
        text, length = f"{name}{BOT} {rest}".strip(), len(name) + len(BOT)
    else:
        text, length = f"{BOT} {text}", len(BOT)
    entity = {"type": "bot_command" if command else "mention", "offset": 0, "length": length}
    msg = {"message_id": next(_ids), "date": int(time.time()), "text": text,
           "chat": {"id": -500, "type": "supergroup"}, "entities": [entity],
           "from": {"id": user, "is_bot": False, "first_name": f"user{user}"}}
    answer = server.http.post("/telegram/tg/webhook", json={"update_id": next(_ids),
                                                            "message": msg},
                              headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    return server.wait_turn(answer.json()["turn_id"])


def state(server: Server, session_id: str) -> str:
    return server.api("GET", f"/api/sessions/{session_id}").json()["state"]


def test_only_the_owner_pauses_resumes_and_transfers_their_session(serve, fake_telegram):
    server = serve(TELEGRAM.replace("SECRET", SECRET).replace("BASE", fake_telegram.base_url))

    def answer() -> str:
        return fake_telegram.calls("sendMessage")[-1]["text"]

    sid = say(server, "hello")["session_id"]
    assert say(server, "/pause", user=BOB)["status"] == "delivered"
    assert answer() == "Only the person who started this conversation can pause it."
    assert state(server, sid) == "live"
    paused = say(server, "/pause")
    assert "/pause" in paused["route_reason"] and answer().startswith("Paused")
    assert state(server, sid) == "paused"
    held = say(server, "kept while paused")
    assert held["status"] == "held"
    say(server, "/resume", user=BOB)
    assert answer() == "Only the person who started this conversation can resume it."
    say(server, "/resume")
    assert server.wait_turn(held["id"])["status"] == "delivered"  # answered after the resume
    resumed = [c["text"] for c in fake_telegram.calls("sendMessage")[-2:]]
    assert any(t.startswith("Resumed") for t in resumed) and state(server, sid) == "live"
    say(server, "/agents", user=BOB)
    assert answer() == ("You are talking to triager. It can be moved to: helper "
                        "(send /transfer NAME).")
    say(server, "/transfer helper", user=BOB)
    assert answer() == "Only the person who started this conversation can transfer it."
    say(server, "/transfer nobody")
    assert answer() == "Usage: /transfer NAME, where NAME is one of: helper"
    assert state(server, sid) == "live"
    say(server, "/transfer helper")
    assert answer() == "Transferred to helper: your next message goes to helper."
    moved = say(server, "who is this")
    assert moved["agent"] == "helper" and moved["session_id"] != sid
    say(server, "/end")
    assert answer().startswith("This conversation has ended")
    assert state(server, moved["session_id"]) == "ended"
    moves = [e["data"] for e in server.api("GET", f"/api/sessions/{sid}").json()["transcript"]
             if e.get("data", {}).get("to")]
    assert [(m["to"], m["cause"], m["actor"]) for m in moves] == [
        ("paused", "user", str(ALICE)), ("live", "user", str(ALICE)),
        ("ended", "transferred", str(ALICE))]


def slack_with_slash(api_url: str) -> str:
    """One Slack account with the slash command `/agent`; DMs reach triager, which may hand
    the session to Helper (a name with a capital: the argument keeps its case)."""
    return (slack_config(api_url, transfer_to=["Helper"])
            .replace("agents:\n", "agents:\n  Helper: {handler: echo}\n")
            .replace("    api_url:", "    slash_command: /agent\n    api_url:"))


def test_the_slack_slash_command_pauses_and_transfers_the_persons_session(serve, fake_slack):
    server = serve(slack_with_slash(fake_slack.api_url))

    def dm(text: str) -> dict[str, Any]:
        event = slack_message(text, channel="D0ALICE", channel_type="im")
        return server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])

    def slash(text: str, user: str = "U0ALICE") -> str:
        body = f"command=%2Fagent&text={text}&channel_id=D0ALICE&user_id={user}".encode()
        answer = server.http.post("/slack/slack-acme/commands", content=body, headers={
            **slack_signature(body), "Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200 and answer.json()["response_type"] == "ephemeral"
        return answer.json()["text"]

    sid = dm("hello")["session_id"]
    assert slash("pause").startswith("Paused: your messages are kept, and answered after "
                                     "/agent resume")
    assert state(server, sid) == "paused"
    assert slash("resume").startswith("Resumed") and state(server, sid) == "live"
    assert "(send /agent transfer NAME)" in slash("agents")
    assert slash("transfer Helper") == "Transferred to Helper: your next message goes to Helper."
    after = dm("still there?")
    assert after["agent"] == "Helper"
    assert slash("end").startswith("This conversation has ended")
    assert state(server, after["session_id"]) == "ended"

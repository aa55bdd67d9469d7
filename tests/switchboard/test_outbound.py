"""Outbound messages (issue 22, section 1): an agent starts a conversation in Slack, Telegram or
email, now or at a set time, and the person's answer continues that same session."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import pytest

from conftest import (
    ADMIN,
    OPERATOR,
    OPERATORS_YAML,
    VIEWER,
    ServeProcess,
    mail_config,
    slack_config,
    slack_message,
    wait_until,
)
from fakes.mail import provision, send, turn_of
from operator_cli import cli, said

TG_SECRET = "tg-secret_123"


def outbound_config(api_url: str, scope: str = "conversation") -> str:
    """Two echo agents on the fake Slack's account (`other` only in C0OTHER), and a spare."""
    return slack_config(
        api_url, agents={name: {"handler": "echo"} for name in ("triager", "other", "spare")},
        bindings=[{"name": "triage-slack", "agent": "triager", "account": "slack-acme",
                   "session_scope": scope, "follow_threads": True},
                  {"name": "other-slack", "agent": "other", "account": "slack-acme",
                   "channels": ["C0OTHER"], "dm": False, "mentions": False}],
        sections={"delivery": {"backoff": 0.05, "max_backoff": 0.2, "max_attempts": 2}})


def telegram_config(base_url: str) -> str:
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  tg: {{provider: telegram, token: "123:ABC", webhook_secret: {TG_SECRET}, base_url: "{base_url}"}}
bindings:
  - {{name: triage-telegram, agent: triager, account: tg, session_scope: thread}}
"""


def tg_update(text: str, chat_id: int, user_id: int, message_id: int) -> dict[str, Any]:
    """A private chat's message as the Bot API sends it (Update with a Message)."""
    chat = {"id": chat_id, "type": "private", "first_name": "Ann", "username": "ann"}
    return {"update_id": 500000 + message_id, "message": {
        "message_id": message_id, "date": int(time.time()), "chat": chat, "text": text,
        "from": {"id": user_id, "is_bot": False, "first_name": "Ann", "username": "ann",
                 "language_code": "en"}}}


def send_message(server: Any, body: dict[str, Any], agent: str = "triager",
                 token: str = OPERATOR) -> Any:
    return server.api("POST", f"/api/agents/{agent}/messages", token=token, json=body)


def sent(server: Any, body: dict[str, Any], agent: str = "triager") -> dict[str, Any]:
    response = send_message(server, body, agent)
    assert response.status_code == 202, response.text
    return response.json()


def names(turn: dict[str, Any]) -> list[str]:
    return [e["name"] for e in turn["events"]]


def test_slack_dm_opens_the_conversation_and_the_reply_joins_the_session(serve, fake_slack):
    server = serve(outbound_config(fake_slack.api_url))
    started = sent(server, {"account": "slack-acme", "to": {"user": "U0ANN"},
                            "text": "Your laptop is ready for pickup."})
    turn = server.wait_turn(started["turn_id"])
    assert turn["status"] == "delivered", turn
    assert turn["kind"] == "outbound" and turn["session_id"] == started["session_id"]
    [opened] = fake_slack.method_calls("conversations.open")
    assert opened["users"] == "U0ANN"
    [post] = fake_slack.posts
    assert post["channel"] == "D0ANNX" and post["text"] == "Your laptop is ready for pickup."
    assert turn["provider_message_id"] == post["ts"]
    assert {"outbound", "routed", "session_created", "scheduled",
            "delivered"} <= set(names(turn))
    # the person answers in the DM: a message.im event, as Slack sends it
    answer = slack_message("Great, I'll come by at 3", channel="D0ANNX", user="U0ANN",
                           channel_type="im")
    response = server.slack_event("slack-acme", answer)
    reply = server.wait_turn(response.json()["turn_id"])
    assert reply["status"] == "delivered"
    assert reply["session_id"] == started["session_id"]
    session = server.api("GET", f"/api/sessions/{started['session_id']}").json()
    said = [(m["role"], m["text"]) for m in session["transcript"] if m["role"] != "system"]
    assert said[:2] == [("agent", "Your laptop is ready for pickup."),
                        ("user", "Great, I'll come by at 3")]
    # a second message continues the session (conversations.open answers already_open)
    again = sent(server, {"account": "slack-acme", "to": {"user": "U0ANN"}, "text": "Reminder"})
    assert again["session_id"] == started["session_id"]
    fresh = sent(server, {"account": "slack-acme", "to": {"user": "U0ANN"}, "text": "New topic",
                          "session": "new"})
    assert fresh["session_id"] != started["session_id"]
    ended = server.api("GET", f"/api/sessions/{started['session_id']}").json()
    assert ended["state"] == "ended"


def test_slack_channel_thread_and_scope_refusals(serve, fake_slack):
    server = serve(outbound_config(fake_slack.api_url, scope="thread"))
    refused = send_message(server, {"account": "slack-acme", "to": {"conversation": "C0OPS"},
                                    "text": "Deploy at 5?"})
    assert refused.status_code == 400 and "to.thread" in refused.json()["detail"]
    started = sent(server, {"account": "slack-acme",
                            "to": {"conversation": "C0OPS", "thread": "1700000000.000100"},
                            "text": "Deploy at 5?"})
    server.wait_turn(started["turn_id"])
    [post] = fake_slack.posts
    assert post["channel"] == "C0OPS" and post["thread_ts"] == "1700000000.000100"
    # a reply in the thread, no mention: follow_threads counts the outbound message
    answer = slack_message("yes, go", channel="C0OPS", user="U0BOB",
                           thread_ts="1700000000.000100")
    reply = server.wait_turn(server.slack_event("slack-acme", answer).json()["turn_id"])
    assert reply["status"] == "delivered" and reply["session_id"] == started["session_id"]
    # Slack refuses the post: the turn fails with Slack's words
    fake_slack.fail_next("channel_not_found")
    lost = sent(server, {"account": "slack-acme",
                         "to": {"conversation": "C0GONE", "thread": "1700000000.000200"},
                         "text": "anyone?"})
    failed = server.wait_turn(lost["turn_id"])
    assert failed["status"] == "failed" and failed["error"] == "channel_not_found"
    assert failed["events"][-1]["name"] == "delivery_failed"
    assert failed["events"][-1]["detail"]["error"] == "channel_not_found"
    fake_slack.missing_users.add("U0GONE")
    gone = send_message(server, {"account": "slack-acme", "to": {"user": "U0GONE"},
                                 "text": "hi"})
    assert gone.status_code == 400 and "user_not_found" in gone.json()["detail"]


def test_validation_errors(serve, fake_slack):
    server = serve(outbound_config(fake_slack.api_url))
    body = {"account": "slack-acme", "to": {"user": "U1"}, "text": "hi"}
    cases = [
        ({**body, "colour": "red"}, 400, "unknown field colour"),
        ({**body, "to": {"user": "U1", "nickname": "x"}}, 400, "unknown field to.nickname"),
        ({**body, "to": {"user": "U1", "email": "a@b.c"}}, 400, "exactly one"),
        ({**body, "to": {"user": "U1", "thread": "1.2"}}, 400, "thread goes with"),
        ({**body, "send_at": "2026-12-02T09:00:00"}, 400, "send_at"),
        ({**body, "session": "forever"}, 400, "session"),
        ({**body, "text": ""}, 400, "text"),
        ({**body, "account": "nowhere"}, 404, "no account nowhere"),
        ({**body, "to": {"email": "ann@example.com"}}, 400, "to.user"),
    ]
    for request, status, words in cases:
        response = send_message(server, request)
        assert response.status_code == status, (request, response.text)
        assert words in response.text, (words, response.text)
    assert send_message(server, body, agent="ghost").status_code == 404
    unbound = send_message(server, body, agent="spare")
    assert unbound.status_code == 409 and "no binding" in unbound.json()["detail"]
    elsewhere = send_message(server, body, agent="other")  # other answers C0OTHER only
    assert elsewhere.status_code == 409
    assert "would go to agent triager" in elsewhere.json()["detail"]
    theirs = send_message(server, {**body, "to": {"conversation": "C0OTHER"}})
    assert theirs.status_code == 409 and "would go to agent other" in theirs.json()["detail"]
    limited = server.api("POST", "/api/operators", token=ADMIN,
                         json={"name": "other-ops", "role": "operator", "agents": ["other"]})
    assert limited.status_code in (200, 201), limited.text
    limited_send = send_message(server, body, token=limited.json()["token"])
    assert limited_send.status_code == 403
    viewer = send_message(server, body, token=VIEWER)
    assert viewer.status_code == 403
    assert server.turns() == []  # nothing half-written
    assert fake_slack.posts == []


def test_telegram_chat_and_its_reply(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    started = sent(server, {"account": "tg", "to": {"conversation": "42"},
                            "text": "Your order shipped."})
    turn = server.wait_turn(started["turn_id"])
    assert turn["status"] == "delivered", turn
    [call] = fake_telegram.calls("sendMessage")
    assert call["chat_id"] == 42 and call["text"] == "Your order shipped."
    response = server.http.post("/telegram/tg/webhook", json=tg_update("thanks!", 42, 42, 7),
                                headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    reply = server.wait_turn(response.json()["turn_id"])
    assert reply["status"] == "delivered" and reply["session_id"] == started["session_id"]


def test_email_outreach_and_the_reply_threads_into_it(serve, mail_relay):
    relay, port = mail_relay
    server = serve(mail_config(port, name="triage-mail", session_scope="thread"))
    inbox = provision(server, account="mail")
    started = sent(server, {"account": "mail", "to": {"email": "Ann@Example.com",
                                                      "subject": "Your ticket"},
                            "text": "Is the printer fixed?"})
    turn = server.wait_turn(started["turn_id"])
    assert turn["status"] == "delivered", turn
    [mail] = relay.messages
    assert mail["From"] == inbox and mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Your ticket" and "In-Reply-To" not in mail
    assert mail["Message-ID"] == turn["provider_message_id"]
    # Ann answers from her mail client
    answer = EmailMessage()
    answer["From"], answer["To"] = "Ann <ann@example.com>", inbox
    answer["Subject"] = "Re: Your ticket"
    answer["Message-ID"] = make_msgid(domain="example.com")
    answer["In-Reply-To"] = answer["References"] = mail["Message-ID"]
    answer.set_content("Yes, thank you!\n\nOn Wed, Switchboard wrote:\n> Is the printer fixed?")
    send(server, "ann@example.com", inbox, answer.as_bytes(policy=policy.SMTP))
    reply = turn_of(server, inbox, str(answer["Message-ID"]))
    assert reply["status"] == "delivered" and reply["session_id"] == started["session_id"]
    assert wait_until(lambda: len(relay.messages) == 2)
    assert relay.messages[1]["In-Reply-To"] == answer["Message-ID"]


def test_scheduled_message_sent_once_at_its_time_and_cancel(serve, fake_slack):
    server = serve(outbound_config(fake_slack.api_url))
    at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    later = sent(server, {"account": "slack-acme", "to": {"user": "U0ANN"}, "text": "Standup!",
                          "send_at": at})
    kept = sent(server, {"account": "slack-acme", "to": {"user": "U0BOB"}, "text": "Cancel me",
                         "send_at": at})
    assert server.turn(later["turn_id"])["delivery_status"] == "scheduled"
    cancelled = server.api("POST", f"/api/turns/{kept['turn_id']}/cancel", token=OPERATOR)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert "cancelled" in names(cancelled.json())
    time.sleep(0.5)  # a few sweeps: nothing is due yet
    assert fake_slack.posts == []
    server.travel(hours=1, minutes=59)  # not due yet; the policy ended the idle session
    assert server.api("GET", f"/api/sessions/{later['session_id']}").json()["state"] == "ended"
    assert fake_slack.posts == []
    server.travel(minutes=1, seconds=1)  # due: sent, and its session is live again
    turn = server.wait_turn(later["turn_id"])
    assert turn["status"] == "delivered"
    time.sleep(0.5)
    assert [p["text"] for p in fake_slack.posts] == ["Standup!"]  # once; the cancelled never
    server.travel(seconds=1)
    session = server.api("GET", f"/api/sessions/{later['session_id']}").json()
    assert session["state"] == "live"
    answer = slack_message("joining now", channel="D0ANNX", user="U0ANN", channel_type="im")
    reply = server.wait_turn(server.slack_event("slack-acme", answer).json()["turn_id"])
    assert reply["session_id"] == later["session_id"]
    again = server.api("POST", f"/api/turns/{later['turn_id']}/cancel", token=OPERATOR)
    assert again.status_code == 409 and "already sent" in again.json()["detail"]
    twice = server.api("POST", f"/api/turns/{kept['turn_id']}/cancel", token=OPERATOR)
    assert twice.status_code == 409
    assert server.turns(status="cancelled")[0]["id"] == kept["turn_id"]


def test_scheduled_message_survives_sigkill_and_is_sent_once(tmp_path, database_url,
                                                             fake_slack):
    """SIGKILL before the time; the restarted serve (on PostgreSQL, two of them racing)
    sends it once."""
    path = tmp_path / "bindings.yaml"
    path.write_text(outbound_config(fake_slack.api_url) + OPERATORS_YAML)
    first = ServeProcess(path, database_url, tmp_path)
    try:
        at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
        started = first.api("POST", "/api/agents/triager/messages", token=OPERATOR, json={
            "account": "slack-acme", "to": {"user": "U0ANN"}, "text": "On time", "send_at": at})
        assert started.status_code == 202, started.text
        first.kill()
    finally:
        first.stop()
    assert fake_slack.posts == []
    count = 2 if "postgres" in database_url else 1
    with ThreadPoolExecutor(count) as pool:  # started together, they race for the row
        starting = [pool.submit(ServeProcess, path, database_url, tmp_path)
                    for _ in range(count)]
    restarted = [f.result() for f in starting if f.exception() is None]
    try:
        for f in starting:  # one that did not start fails the test, the others are stopped
            if (error := f.exception()) is not None:
                raise error
        wait_until(lambda: fake_slack.posts, timeout=15)
        time.sleep(1.0)  # every process swept meanwhile
        assert [p["text"] for p in fake_slack.posts] == ["On time"]
        turn = restarted[0].api("GET", f"/api/turns/{started.json()['turn_id']}").json()
        assert turn["status"] == "delivered"
    finally:
        for process in restarted:
            process.stop()


def test_cli_send_and_cancel(serve, fake_slack, database_url):
    server = serve(outbound_config(fake_slack.api_url))
    env = {"SWITCHBOARD_DATABASE_URL": database_url}
    result = cli("send", "triager", "Hello from the CLI", "--account", "slack-acme",
                 "--to", "user:U0ANN", "--at", "2h", "--url", server.url, "--token", OPERATOR,
                 "--json", env=env)
    assert result.exit_code == 0, said(result)
    turn_id = json.loads(result.stdout)["turn_id"]
    assert server.turn(turn_id)["delivery_status"] == "scheduled"
    cancelled = cli("turns", "cancel", turn_id, env=env)
    assert cancelled.exit_code == 0 and "cancelled" in said(cancelled)
    again = cli("turns", "cancel", turn_id, env=env)
    assert again.exit_code == 1 and "cancelled already" in said(again)
    assert server.turn(turn_id)["status"] == "cancelled"
    bad = cli("send", "triager", "hi", "--account", "slack-acme", "--to", "U0ANN",
              "--url", server.url, "--token", OPERATOR, env=env)
    assert bad.exit_code == 2 and "user:U123" in said(bad)
    refused = cli("send", "triager", "hi", "--account", "nowhere", "--to", "user:U1",
                  "--url", server.url, "--token", OPERATOR, env=env)
    assert refused.exit_code == 1 and "no account nowhere" in said(refused)
    now = cli("send", "triager", "Right now", "--account", "slack-acme", "--to",
              "user:U0ANN", "--url", server.url, "--token", OPERATOR, env=env)
    assert now.exit_code == 0, said(now)
    assert wait_until(lambda: [p["text"] for p in fake_slack.posts] == ["Right now"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_message_due_soon_does_not_hold_up_shutdown(serve, fake_slack):
    """Its timer is not work a shutdown waits for (the sweep sends it after a restart)."""
    server = serve(outbound_config(fake_slack.api_url))
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    sent(server, {"account": "slack-acme", "to": {"user": "U0BOB"}, "text": "In a moment",
                  "send_at": soon})
    wait_until(lambda: [p["text"] for p in fake_slack.posts] == ["In a moment"])
    at = (datetime.now(UTC) + timedelta(minutes=20)).isoformat()
    later = sent(server, {"account": "slack-acme", "to": {"user": "U0ANN"}, "text": "Soon",
                          "send_at": at})
    assert server.turn(later["turn_id"])["delivery_status"] == "scheduled"
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 5.0  # Tasks.drain waited 10 s for a sleeping task
    assert [p["text"] for p in fake_slack.posts] == ["In a moment"]

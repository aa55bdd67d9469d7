"""A Telegram bot end to end: webhook updates and long polling in, sendMessage out to the fake
Bot API, every update a turn the operator API shows."""

from __future__ import annotations

import itertools
import time
from typing import Any

SECRET = "tg-secret_123"
BOT_ID = 999
_ids = itertools.count(1000)


def telegram_config(base_url: str, mode: str = "webhook", **binding: Any) -> str:
    extra = "".join(f"\n    {k}: {v!r}" if not isinstance(v, list) else f"\n    {k}: {v}"
                    for k, v in binding.items())
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  tg:
    provider: telegram
    token: "123:ABC"
    webhook_secret: {SECRET}
    base_url: {base_url}
    mode: {mode}
    poll_timeout: 1
bindings:
  - name: triage-telegram
    agent: triager
    account: tg{extra}
"""


def message(text: str | None, *, chat_type: str = "private", chat_id: int = 42,
            user_id: int = 7, **more: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"message_id": next(_ids), "date": int(time.time()),
                           "chat": {"id": chat_id, "type": chat_type},
                           "from": {"id": user_id, "is_bot": False, "first_name": "Alice",
                                    "username": "alice"}, **more}
    if text is not None:
        msg["text"] = text
    return msg


def update(msg: dict[str, Any], kind: str = "message") -> dict[str, Any]:
    return {"update_id": next(_ids), kind: msg}


def post(server, body: dict[str, Any] | bytes, secret: str | None = SECRET):
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    if isinstance(body, bytes):
        return server.http.post("/telegram/tg/webhook", content=body, headers=headers)
    return server.http.post("/telegram/tg/webhook", json=body, headers=headers)


def test_private_message_gets_a_reply(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    response = post(server, update(message("hello bot")))
    assert response.status_code == 200
    turn = server.wait_turn(response.json()["turn_id"])
    assert turn["status"] == "delivered"
    [sent] = fake_telegram.calls("sendMessage")
    assert sent["chat_id"] == 42 and "hello bot" in sent["text"]
    assert "reply_parameters" not in sent
    assert turn["provider_message_id"]
    assert turn["provider"] == "telegram" and turn["sender"] == "7"


def test_group_without_mention_is_ignored_and_with_mention_quotes(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    plain = post(server, update(message("just talking", chat_type="supergroup", chat_id=-100)))
    turn = server.wait_turn(plain.json()["turn_id"])
    assert turn["status"] == "ignored"
    assert "does not mention the bot" in turn["route_reason"]

    text = "hey @SwitchBoard_Bot help"
    msg = message(text, chat_type="supergroup", chat_id=-100,
                  entities=[{"type": "mention", "offset": 4, "length": 16}])
    turn = server.wait_turn(post(server, update(msg)).json()["turn_id"])
    assert turn["status"] == "delivered"
    [sent] = fake_telegram.calls("sendMessage")
    assert sent["reply_parameters"]["message_id"] == msg["message_id"]


def test_reply_to_the_bots_message_is_answered(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    bot_msg = {"message_id": 5, "date": 0, "chat": {"id": -100, "type": "group"},
               "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bot"}, "text": "hi"}
    msg = message("thanks", chat_type="group", chat_id=-100, reply_to_message=bot_msg)
    turn = server.wait_turn(post(server, update(msg)).json()["turn_id"])
    assert turn["status"] == "delivered"


def test_forum_topic_reply_goes_into_the_topic(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url, session_scope="thread"))
    topic_root = {"message_id": 77, "date": 0, "chat": {"id": -200, "type": "supergroup",
                                                        "is_forum": True},
                  "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bot"},
                  "forum_topic_created": {"name": "help", "icon_color": 1}}
    msg = message("/ask@switchboard_bot what now", chat_type="supergroup", chat_id=-200,
                  message_thread_id=77, is_topic_message=True, reply_to_message=topic_root,
                  entities=[{"type": "bot_command", "offset": 0, "length": 20}])
    turn = server.wait_turn(post(server, update(msg)).json()["turn_id"])
    assert turn["status"] == "delivered", turn
    assert turn["thread"] == "77"
    [sent] = fake_telegram.calls("sendMessage")
    assert sent["message_thread_id"] == 77
    # In the topic the bot created, a plain message is not a mention (the forum trap).
    plain = message("no mention", chat_type="supergroup", chat_id=-200, message_thread_id=77,
                    is_topic_message=True, reply_to_message=topic_root)
    assert server.wait_turn(post(server, update(plain)).json()["turn_id"])["status"] == "ignored"


def test_wrong_or_missing_secret_is_403_and_no_turn(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    assert post(server, update(message("x")), secret="wrong").status_code == 403
    assert post(server, update(message("x")), secret=None).status_code == 403
    assert post(server, b"{nope").status_code == 400
    assert server.turns() == []
    [account] = server.api("GET", "/api/accounts").json()["accounts"]
    assert account["rejected"] == {"bad_secret": 2, "malformed": 1}


def test_same_update_twice_is_one_turn_and_one_reply(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    body = update(message("once"))
    first = post(server, body).json()
    second = post(server, body).json()
    assert second["duplicate_of"] == first["turn_id"]
    server.wait_turn(first["turn_id"])
    time.sleep(0.3)
    assert len(fake_telegram.calls("sendMessage")) == 1
    assert len(server.turns()) == 1


def test_edits_stickers_and_channel_posts_are_ignored_with_reasons(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    original = message("first")
    edited = {**original, "text": "first, edited", "edit_date": int(time.time())}
    sticker = message(None, sticker={"file_id": "x", "file_unique_id": "y", "width": 1,
                                     "height": 1, "is_animated": False, "is_video": False,
                                     "type": "regular"})
    captioned = message(None, photo=[{"file_id": "p", "file_unique_id": "q", "width": 1,
                                      "height": 1}], caption="look at this")
    post_ = message("news", chat_type="channel", chat_id=-300)
    reasons = {}
    for name, body in [("edit", update(edited, "edited_message")), ("sticker", update(sticker)),
                       ("channel", update(post_, "channel_post"))]:
        reasons[name] = server.wait_turn(post(server, body).json()["turn_id"])
    assert all(t["status"] == "ignored" for t in reasons.values())
    assert "edit" in reasons["edit"]["route_reason"]
    assert "sticker" in reasons["sticker"]["route_reason"]
    assert "channel post" in reasons["channel"]["route_reason"]
    turn = server.wait_turn(post(server, update(captioned)).json()["turn_id"])
    assert turn["status"] == "delivered" and turn["text"] == "look at this"


def test_blocked_bot_fails_the_turn_with_telegrams_words(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    fake_telegram.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
    turn = server.wait_turn(post(server, update(message("hi"))).json()["turn_id"])
    assert turn["status"] == "failed"
    assert turn["error"] == "Forbidden: bot was blocked by the user"
    assert turn["delivery_attempts"] == 1
    fake_telegram.fail_next("sendMessage", 400, "Bad Request: chat not found")
    turn = server.wait_turn(post(server, update(message("hi"))).json()["turn_id"])
    assert turn["error"] == "Bad Request: chat not found"


def test_429_waits_retry_after_then_delivers(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    fake_telegram.fail_next("sendMessage", 429, "Too Many Requests: retry after 1",
                            retry_after=1)
    started = time.time()
    turn = server.wait_turn(post(server, update(message("hi"))).json()["turn_id"])
    assert turn["status"] == "delivered"
    assert turn["delivery_attempts"] == 2
    sends = fake_telegram.calls("sendMessage")
    assert len(sends) == 2
    assert time.time() - started >= 1.0


def test_long_reply_is_split_in_order(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    text = "\n".join(f"line {i:05d} " + "x" * 80 for i in range(100))
    turn = server.wait_turn(post(server, update(message(text))).json()["turn_id"])
    assert turn["status"] == "delivered"
    sends = fake_telegram.calls("sendMessage")
    assert len(sends) >= 3 and all(len(s["text"]) <= 4096 for s in sends)
    assert "".join(s["text"] for s in sends).replace("\n", "") == \
        ("echo: " + text).replace("\n", "")


def test_allowlists_of_senders_and_chats(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url, allow_senders=["7"],
                                   allow_conversations=["42"]))
    ok = server.wait_turn(post(server, update(message("hi"))).json()["turn_id"])
    assert ok["status"] == "delivered"
    stranger = server.wait_turn(post(server, update(message("hi", user_id=8))).json()["turn_id"])
    assert stranger["route_reason"] == ("sender 8 is not in allow_senders of binding "
                                        "triage-telegram")
    other_chat = server.wait_turn(post(server, update(message("hi", chat_id=43))
                                       ).json()["turn_id"])
    assert other_chat["route_reason"] == ("conversation 43 is not in allow_conversations of "
                                          "binding triage-telegram")


def test_polling_restart_neither_duplicates_nor_skips(serve, fake_telegram):
    config = telegram_config(fake_telegram.base_url, mode="polling")
    server = serve(config)
    first = [fake_telegram.push_update(update(message(f"p{i}"))) for i in range(3)]
    deadline = time.time() + 10
    while len(fake_telegram.calls("sendMessage")) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert len(fake_telegram.calls("deleteWebhook")) >= 1
    server.stop()
    # updates that arrive while Switchboard is down
    second = [fake_telegram.push_update(update(message(f"q{i}"))) for i in range(2)]
    server = serve(config)
    deadline = time.time() + 10
    while len(fake_telegram.calls("sendMessage")) < 5 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # one more poll round: nothing is replayed
    texts = sorted(s["text"] for s in fake_telegram.calls("sendMessage"))
    assert texts == sorted(f"echo: {u['message']['text']}" for u in first + second)
    turns = server.turns()
    assert len(turns) == 5 and all(t["status"] == "delivered" for t in turns)


def test_cli_set_webhook_registers_url_with_secret(tmp_path, fake_telegram):
    from typer.testing import CliRunner

    from switchboard.cli import app

    path = tmp_path / "bindings.yaml"
    path.write_text(telegram_config(fake_telegram.base_url))
    result = CliRunner().invoke(app, ["telegram", "set-webhook", "tg", "--url",
                                      "https://example.test/telegram/tg/webhook",
                                      "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert fake_telegram.webhook["url"] == "https://example.test/telegram/tg/webhook"
    assert fake_telegram.webhook["secret_token"] == SECRET
    missing = CliRunner().invoke(app, ["telegram", "set-webhook", "nope", "--url", "https://x",
                                       "--config", str(path)])
    assert missing.exit_code == 1


def test_new_and_end_commands_end_the_persons_session(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    first = server.wait_turn(post(server, update(message("hello"))).json()["turn_id"])
    sid = first["session_id"]
    end = message("/end", entities=[{"type": "bot_command", "offset": 0, "length": 4}])
    ended = server.wait_turn(post(server, update(end)).json()["turn_id"])
    assert ended["status"] == "delivered" and "/end" in ended["route_reason"]
    assert "has ended" in fake_telegram.calls("sendMessage")[-1]["text"]
    assert server.api("GET", f"/api/sessions/{sid}").json()["state"] == "ended"
    second = server.wait_turn(post(server, update(message("again"))).json()["turn_id"])
    assert second["session_id"] != sid
    new = message("/new@switchboard_bot", chat_type="group", chat_id=-500,
                  entities=[{"type": "bot_command", "offset": 0, "length": 20}])
    group_first = message("@switchboard_bot hi", chat_type="group", chat_id=-500,
                          entities=[{"type": "mention", "offset": 0, "length": 16}])
    group_sid = server.wait_turn(post(server, update(group_first)).json()["turn_id"])[
        "session_id"]
    server.wait_turn(post(server, update(new)).json()["turn_id"])
    assert "Started fresh" in fake_telegram.calls("sendMessage")[-1]["text"]
    assert server.api("GET", f"/api/sessions/{group_sid}").json()["state"] == "ended"

"""Live replies in Telegram, end to end: the typing action while the agent works (and never
after), a draft in private chats and an edited message in groups and topics, long replies
continued in new messages, and pacing that waits instead of failing."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from fakes.agents import FakeOpenAI, HTTPAgent
from switchboard.config import ConfigError, load_config

SECRET = "tg-secret_123"
_ids = itertools.count(5000)

TOKENS = [f"token{i} " for i in range(20)]
REPLY = "".join(TOKENS)
GROUP = -1001234


@pytest.fixture
def model():
    with FakeOpenAI(delay=0.03) as server:
        server.tokens = TOKENS
        yield server


def config(base_url: str, agent: str, account: str = "") -> str:
    return f"""
agents:
  helper: {agent}
accounts:
  tg:
    provider: telegram
    token: "123:ABC"
    webhook_secret: {SECRET}
    base_url: {base_url}
    edit_interval: 100ms
    typing_interval: 250ms
    pacing: {{conversation: 50/s, group: none}}{account}
bindings:
  - {{agent: helper, account: tg}}
delivery: {{backoff: 100ms, max_backoff: 300ms}}
"""


def message(text: str, *, chat_type: str = "private", chat_id: int = 42,
            **more: Any) -> dict[str, Any]:
    mention = "@switchboard_bot"
    if text.startswith(mention):
        more["entities"] = [{"type": "mention", "offset": 0, "length": len(mention)}]
    return {"message_id": next(_ids), "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type},
            "from": {"id": 7, "is_bot": False, "first_name": "Alice", "username": "alice"},
            "text": text, **more}


def update(msg: dict[str, Any]) -> dict[str, Any]:
    return {"update_id": next(_ids), "message": msg}


def post(server, body: dict[str, Any]):
    return server.http.post("/telegram/tg/webhook", json=body,
                            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})


def openai(url: str) -> str:
    return f"{{handler: openai, base_url: '{url}/v1', timeout: 5s}}"


def ask(server, text: str = "hello", **kw: Any) -> dict[str, Any]:
    turn_id = post(server, update(message(text, **kw))).json()["turn_id"]
    return server.wait_turn(turn_id, timeout=15)


def methods(fake) -> list[str]:
    with fake._lock:
        return [method for _, method, _ in fake.log]


def names(turn: dict[str, Any]) -> list[str]:
    return [e["name"] for e in turn["events"]]


def test_a_private_chat_sees_typing_then_a_draft_then_one_final_message(serve, fake_telegram,
                                                                       model):
    server = serve(config(fake_telegram.base_url, openai(model.url)))
    turn = ask(server)
    assert turn["status"] == "delivered", turn
    assert fake_telegram.visible(42) == [REPLY]
    seen = methods(fake_telegram)
    assert seen.index("sendchataction") < seen.index("sendmessagedraft")
    # typing at once and again every 250 ms while the agent ran (~0.6 s); never after the reply
    assert seen.count("sendchataction") >= 2
    assert "sendchataction" not in seen[seen.index("sendmessage"):]
    drafts = fake_telegram.calls("sendMessageDraft")
    assert 1 <= len(drafts) <= 8 and len({d["draft_id"] for d in drafts}) == 1
    assert all(REPLY.startswith(d["text"]) for d in drafts)
    assert [s["text"] for s in fake_telegram.calls("sendMessage")] == [REPLY]
    story = ["working", "stream.started", "agent_replied", "delivered", "stream.finished"]
    assert [n for n in names(turn) if n in story] == story


def test_a_topic_sees_a_message_edited_as_it_is_written(serve, fake_telegram, model):
    server = serve(config(fake_telegram.base_url, openai(model.url)))
    fake_telegram.fail_next("editMessageText", 400, "Bad Request: message is not modified: "
                            "specified new message content and reply markup are exactly the "
                            "same as a current content and reply markup of the message")
    turn = ask(server, "@switchboard_bot hi", chat_type="supergroup", chat_id=GROUP,
               message_thread_id=77, is_topic_message=True)
    assert turn["status"] == "delivered", turn
    assert fake_telegram.visible(GROUP) == [REPLY]
    [first] = fake_telegram.calls("sendMessage")
    assert first["message_thread_id"] == 77 and first["reply_parameters"]["message_id"]
    edits = fake_telegram.calls("editMessageText")
    assert 2 <= len(edits) <= 9 and edits[-1]["text"] == REPLY
    assert fake_telegram.calls("sendMessageDraft") == []
    assert all(c["message_thread_id"] == 77 for c in fake_telegram.calls("sendChatAction"))
    assert "stream.failed" not in names(turn)  # "not modified" is not a failure


def test_a_long_streamed_reply_continues_in_a_new_message_at_a_paragraph(serve, fake_telegram,
                                                                         model):
    model.tokens = [f"paragraph {i} " + "x" * 480 + "\n\n" for i in range(12)]
    server = serve(config(fake_telegram.base_url, openai(model.url)))
    turn = ask(server, "@switchboard_bot long", chat_type="group", chat_id=GROUP)
    assert turn["status"] == "delivered", turn
    shown = fake_telegram.visible(GROUP)
    assert len(shown) == 2 and all(len(text) <= 4096 for text in shown)
    assert shown[0].endswith("x") and shown[1].startswith("paragraph")
    assert "\n\n".join(shown).rstrip("\n") == turn["reply_text"].rstrip("\n")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the provider's side
def test_faults_end_with_one_complete_message(serve, fake_telegram, model):
    """Errors, a 429 with retry_after and lost answers at the start, an edit and the end:
    each chat ends with exactly one complete message, the transcript's reply."""
    model.delay = 0.01
    server = serve(config(fake_telegram.base_url, openai(model.url)))
    cases: list[tuple[int, Any]] = [
        (GROUP - 1, lambda: fake_telegram.fail_next("editMessageText", 429,
                                                    "Too Many Requests: retry after 1",
                                                    retry_after=1, times=2)),
        (GROUP - 2, lambda: fake_telegram.lose_next("sendMessage")),
        (GROUP - 3, lambda: fake_telegram.fail_next("editMessageText", 502, "Bad Gateway",
                                                    times=4)),
        (GROUP - 4, lambda: fake_telegram.lose_next("editMessageText", times=3)),
        (43, lambda: fake_telegram.fail_next("sendMessageDraft", 400,
                                             "Bad Request: TEXTDRAFT_PEER_INVALID", times=30)),
    ]
    for chat, inject in cases:
        inject()
        kind = "private" if chat > 0 else "group"
        turn = ask(server, "@switchboard_bot go", chat_type=kind, chat_id=chat)
        assert turn["status"] == "delivered", (chat, turn["events"])
        assert fake_telegram.visible(chat).count(REPLY) == 1, (chat, fake_telegram.visible(chat))
        with fake_telegram._lock:
            fake_telegram._failures.clear()
            fake_telegram._lost.clear()


def test_a_paced_message_waits_and_the_timeline_says_why(serve, fake_telegram):
    server = serve(config(fake_telegram.base_url, "{handler: echo}",
                          "\n    pacing: {conversation: 1/600ms}").replace(
        "    pacing: {conversation: 50/s, group: none}\n", ""))
    first = post(server, update(message("one"))).json()["turn_id"]
    second = post(server, update(message("two"))).json()["turn_id"]
    turns = [server.wait_turn(t) for t in (first, second)]
    assert all(t["status"] == "delivered" for t in turns)
    sent = [at for at, method, chat in fake_telegram.log if method == "sendmessage"]
    assert sent[1] - sent[0] >= 0.55
    paced = [e for t in turns for e in t["events"] if e["name"] == "paced"]
    assert len(paced) == 1
    assert paced[0]["detail"]["why"].startswith("waiting 0.")
    assert paced[0]["detail"]["why"].endswith("for Telegram's per-chat limit")
    assert "switchboard_paced_wait_seconds_count" in server.http.get("/metrics").text


def test_a_wait_longer_than_the_lease_postpones_the_reply_without_using_an_attempt(
        serve, fake_telegram):
    server = serve(config(fake_telegram.base_url, "{handler: echo}",
                          "\n    pacing: {conversation: 1/1500ms}").replace(
        "    pacing: {conversation: 50/s, group: none}\n", "").replace(
        "delivery: {", "delivery: {lease: 1s, "))
    first = post(server, update(message("one", chat_id=44))).json()["turn_id"]
    second = post(server, update(message("two", chat_id=44))).json()["turn_id"]
    turns = [server.wait_turn(t) for t in (first, second)]
    assert [t["status"] for t in turns] == ["delivered", "delivered"]
    assert [t["delivery_attempts"] for t in turns] == [1, 1]
    [paced] = [e for t in turns for e in t["events"] if e["name"] == "paced"]
    assert paced["detail"]["until"] and paced["detail"]["why"].startswith("waiting 1.")
    sent = [at for at, method, chat in fake_telegram.log if method == "sendmessage"]
    assert sent[1] - sent[0] >= 1.4


def test_typing_stops_when_the_agent_fails(serve, fake_telegram, model):
    model.delay, model.break_after = 0.3, 2  # the model server dies after two tokens
    server = serve(config(fake_telegram.base_url, openai(model.url)))
    turn = ask(server)
    assert turn["status"] == "failed"
    typed = len(fake_telegram.calls("sendChatAction"))
    assert typed >= 2
    time.sleep(0.6)
    assert len(fake_telegram.calls("sendChatAction")) == typed
    assert fake_telegram.calls("sendMessage") == []  # the draft fades; no partial message


def test_an_http_agent_streams_ndjson_and_sse(serve, fake_telegram):
    with HTTPAgent() as agent:
        server = serve(config(fake_telegram.base_url,
                              f"{{handler: http, url: '{agent.url}/turn'}}"))
        for index, (mode, kind) in enumerate((("ndjson", None), ("sse", None),
                                              ("ndjson", "application/ndjson; charset=utf-8"))):
            agent.mode, agent.stream_type = mode, kind
            chat = GROUP - 10 - index
            turn = ask(server, "@switchboard_bot hi", chat_type="group", chat_id=chat)
            assert turn["status"] == "delivered", turn
            assert turn["reply_text"] == "Hello from a streaming agent"
            assert fake_telegram.visible(chat) == ["Hello from a streaming agent"]
            assert "stream.started" in names(turn)
            session = server.api("GET", f"/api/sessions/{turn['session_id']}").json()
            assert session["context"] == {"streamed": True}


def test_live_reply_keys_are_checked_with_the_key_at_fault(tmp_path: Path):
    path = tmp_path / "bindings.yaml"
    path.write_text(config("http://127.0.0.1:9/bot", "{handler: echo}").replace(
        "edit_interval: 100ms", "edit_interval: 0s").replace("50/s", "fast"))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert "accounts.tg.edit_interval" in text and "longer than 0s" in text
    assert "accounts.tg.pacing.conversation" in text and "is not a rate" in text

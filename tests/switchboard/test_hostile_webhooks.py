"""Hostile webhooks through the running app: correctly signed Slack requests and correctly
authenticated Telegram updates that carry what no provider sends (lone surrogates, wrong types,
NaN, deep nesting), bodies that are not UTF-8, odd signature headers. Each gets a clear 4xx or
is recorded cleaned; none is a 500, and none fails a neighbouring good request."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Server, slack_config, slack_message, slack_signature
from hostile import VALUES, replaced

SECRET = "hostile-tg-secret"
BOT_ID = 999  # the fake_telegram fixture's bot
_update_ids = itertools.count(90_000)


def telegram_config(base_url: str) -> str:
    return (f"agents: {{triager: {{handler: echo}}}}\n"
            f"accounts: {{tg: {{provider: telegram, token: '123:ABC', webhook_secret: {SECRET},"
            f" base_url: '{base_url}'}}}}\n"
            f"bindings: [{{agent: triager, account: tg}}]\n")


def message(text: str | None, *, chat_type: str = "private", chat_id: int = 42,
            **fields: Any) -> dict[str, Any]:
    """A Bot API Message from Alice (user 7), with `text` when not None."""
    found = {"message_id": next(_update_ids), "date": int(time.time()),
             "chat": {"id": chat_id, "type": chat_type},
             "from": {"id": 7, "is_bot": False, "first_name": "Alice"}, **fields}
    return found if text is None else {**found, "text": text}


def update(msg: dict[str, Any]) -> dict[str, Any]:
    return {"update_id": next(_update_ids), "message": msg}


def post(server: Server, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.http.post("/telegram/tg/webhook", content=content,
                            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})


def concurrently(requests: list[Any]) -> list[httpx.Response]:
    """Send every request at once (each a function of an httpx.Client), as a burst arrives."""
    start = threading.Barrier(len(requests))

    def send(request: Any) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            start.wait()
            return request(client)

    with concurrent.futures.ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def signed_event(server: Server, body: bytes) -> Any:
    def request(client: httpx.Client) -> httpx.Response:
        return client.post(f"{server.url}/slack/slack-acme/events", content=body,
                           headers={**slack_signature(body), "Content-Type": "application/json"})
    return request


def event_body(event: dict[str, Any], event_id: str) -> bytes:
    return json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": event_id,
                       "event_time": int(time.time()), "event": event}).encode()


def account_rejections(server: Server) -> dict[str, int]:
    [account] = server.api("GET", "/api/accounts").json()["accounts"]
    return account["rejected"]


# --- #2: one bad turn must not fail its neighbours ----------------------------------------------


def test_lone_surrogate_among_forty_concurrent_events_fails_nobody(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    bodies = [event_body(slack_message(f"<@UBOT> question {n}", etype="app_mention",
                                       channel=f"C{n % 5}", ts=f"1700002000.{n:06d}"),
                         f"EvGOOD{n:04d}") for n in range(40)]
    # JSON's "\ud800" escape is valid JSON; json.loads turns it into a lone surrogate
    bad = event_body(slack_message("<@UBOT> broken PLACEHOLDER", etype="app_mention",
                                   ts="1700002000.999999"), "EvBAD0001")
    bad = bad.replace(b"PLACEHOLDER", b"\\ud800 and \\udfff")
    responses = concurrently([signed_event(server, body) for body in [*bodies, bad]])

    assert [r.status_code for r in responses] == [200] * 41, [r.text for r in responses
                                                             if r.status_code != 200]
    turns = [server.wait_turn(r.json()["turn_id"]) for r in responses]
    assert [t["status"] for t in turns] == ["delivered"] * 41
    assert len(fake_slack.posts) == 41
    stored = turns[-1]
    assert stored["text"] == "<@UBOT> broken \ufffd and \ufffd"
    assert stored["payload"]["event"]["text"] == "<@UBOT> broken \ufffd and \ufffd"
    listed = server.api("GET", "/api/turns", params={"limit": 100})
    assert listed.status_code == 200 and len(listed.json()["turns"]) == 41


def test_lone_surrogates_are_cleaned_everywhere_in_the_stored_payload(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    body = event_body(slack_message("<@UBOT> hi", etype="app_mention"), "EvKEY0001")
    body = body.replace(b'"api_app_id"', b'"odd\\udc80key"').replace(
        b'"team_id": "T1"', b'"team_id": "T1", "names": ["a\\ud83d", "\\ud83d\\ude00 ok"]')
    response = server.slack_post("slack-acme", body)
    assert response.status_code == 200, response.text
    turn = server.wait_turn(response.json()["turn_id"])
    assert turn["status"] == "delivered"
    assert turn["payload"]["odd\ufffdkey"] == "A1"
    assert turn["payload"]["names"] == ["a\ufffd", "\U0001f600 ok"]  # a real pair is kept


def test_telegram_text_that_is_an_object_is_refused_alone(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    good = [update(message(f"hello {n}", chat_id=100 + n)) for n in range(20)]
    bad = update(message(None))
    bad["message"]["text"] = {"oops": "an object"}

    def send(body: dict[str, Any]) -> Any:
        return lambda client: client.post(f"{server.url}/telegram/tg/webhook", json=body,
                                          headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})

    responses = concurrently([send(body) for body in [*good, bad]])
    assert [r.status_code for r in responses] == [200] * 20 + [400]
    assert "message.text" in responses[-1].json()["error"]
    turns = [server.wait_turn(r.json()["turn_id"]) for r in responses[:20]]
    assert [t["status"] for t in turns] == ["delivered"] * 20
    assert len(fake_telegram.calls("sendMessage")) == 20


def test_a_group_commit_that_fails_is_retried_one_turn_at_a_time(database_url):
    """A turn the database refuses (here: an adapter that left a datetime in the payload)
    fails alone; the forty written in the same group commit are recorded."""
    from channels.messages import InboundMessage
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine
    from switchboard.views import turn_json

    def inbound(n: int, raw: dict[str, Any]) -> InboundMessage:
        return InboundMessage(provider="slack", account="slack-acme", event_id=f"Ev{n:05d}",
                              conversation="C1", kind="channel", sender="U1",
                              text=f"message {n}", message_id=f"1700000000.{n:06d}", raw=raw)

    async def burst() -> list[Any]:
        engine = create_engine(database_url)
        store = Store(engine, Clock())
        try:
            messages = [inbound(n, {"n": n}) for n in range(40)]
            messages.insert(17, inbound(99, {"at": datetime.now(UTC)}))
            results = await asyncio.gather(
                *(store.turns.record(m, m.raw) for m in messages), return_exceptions=True)
            listed = [turn_json(t) for t in (await store.turns.page({}, limit=100)).items]
            return [results, listed]
        finally:
            store.close()
            await engine.dispose()

    results, listed = asyncio.run(burst())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and "datetime" in str(failed[0])
    assert results[17] is failed[0]
    assert sorted(t["event_id"] for t in listed) == [f"Ev{n:05d}" for n in range(40)]


def test_socket_mode_events_get_the_same_checks(serve, fake_slack):
    """Over Socket Mode, slack-sdk parses the JSON: a mistyped event is acknowledged (a retry
    would be no better) and not recorded; a lone surrogate is cleaned; the next event is fine."""
    server = serve(slack_config(fake_slack.api_url).replace(
        "    signing_secret:", "    mode: socket\n    app_token: xapp-1-test\n    signing_secret:"))
    deadline = time.time() + 10
    while not fake_slack.socket_connected:
        assert time.time() < deadline
        time.sleep(0.05)

    def send(event: dict[str, Any], n: int) -> None:
        fake_slack.socket_send({"envelope_id": f"env-{n}", "type": "events_api",
                                "accepts_response_payload": False, "retry_attempt": 0,
                                "retry_reason": "", "payload": {
                                    "type": "event_callback", "team_id": "T1",
                                    "event_id": f"EvSOCKH{n}", "event": event}})

    send(slack_message("<@UBOT> typed wrong", etype="app_mention", user=["U1"]), 1)
    send(slack_message("<@UBOT> broken \ud800", etype="app_mention"), 2)
    send(slack_message("<@UBOT> fine", etype="app_mention"), 3)
    while len(fake_slack.socket_acks) < 3 or len(fake_slack.posts) < 2:
        assert time.time() < deadline + 10, (fake_slack.socket_acks, fake_slack.posts)
        time.sleep(0.05)
    assert sorted(a["envelope_id"] for a in fake_slack.socket_acks) == ["env-1", "env-2",
                                                                       "env-3"]
    turns = {t["event_id"]: t for t in server.turns()}
    assert sorted(turns) == ["EvSOCKH2", "EvSOCKH3"]
    assert turns["EvSOCKH2"]["text"] == "<@UBOT> broken \ufffd"


# --- #4: bodies that are not UTF-8 are refused on their signature first ---------------------------


def test_invalid_utf8_with_a_bogus_signature_is_401_in_one_short_line(serve, fake_slack,
                                                                       caplog):
    server = serve(slack_config(fake_slack.api_url))
    body = b"\xff\xfe\x00{" + bytes(range(128, 256)) * 4
    headers = {"X-Slack-Request-Timestamp": str(int(time.time())),
               "X-Slack-Signature": "v0=" + "0" * 64}
    with caplog.at_level(logging.INFO):
        events = server.http.post("/slack/slack-acme/events", content=body,
                                  headers={**headers, "Content-Type": "application/json"})
        command = server.http.post(
            "/slack/slack-acme/commands", content=b"command=%2Fagent&text=\xff\xfe",
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert (events.status_code, command.status_code) == (401, 401)
    assert "signature does not match" in events.json()["error"]
    assert account_rejections(server) == {"bad_signature": 2}
    records = [r for r in caplog.records if r.name.startswith(("switchboard", "channels"))]
    assert all(r.exc_info is None for r in records)
    assert all(len(r.getMessage()) < 300 for r in records)
    assert server.turns() == []


def test_signed_bodies_that_are_not_utf8_are_400(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    events = server.slack_post("slack-acme", b'{"type": "event_callback", "x": "\xff"}')
    assert events.status_code == 400 and "UTF-8" in events.json()["error"]
    body = b"command=%2Fagent&text=new\xed\xa0\x80"  # an encoded surrogate is not UTF-8 either
    command = server.http.post("/slack/slack-acme/commands", content=body,
                               headers={**slack_signature(body),
                                        "Content-Type": "application/x-www-form-urlencoded"})
    assert command.status_code == 400 and "UTF-8" in command.json()["error"]
    assert account_rejections(server) == {"malformed": 2}


@pytest.mark.parametrize(("header", "value"), [
    ("X-Slack-Signature", "v0=\xe9\xe8" + "0" * 62),    # non-ASCII signature
    ("X-Slack-Request-Timestamp", "9" * 400),            # too big for a float
    ("X-Slack-Request-Timestamp", "\u0661\u0667\u0660\u0660"),  # digits, but not ASCII ones
    ("X-Slack-Request-Timestamp", "-17"),
])
def test_odd_signature_headers_are_401(serve, fake_slack, header, value):
    server = serve(slack_config(fake_slack.api_url))
    body = event_body(slack_message("<@UBOT> hi", etype="app_mention"), "EvODD00001")
    headers = {**slack_signature(body), "Content-Type": "application/json"}
    headers[header] = value
    response = server.http.post("/slack/slack-acme/events", content=body,
                                headers={k: v.encode("utf-8") for k, v in headers.items()})
    assert response.status_code == 401, response.text
    assert server.turns() == []


def test_a_timestamp_in_the_future_says_so(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    response = server.slack_event("slack-acme", slack_message("<@UBOT> hi", etype="app_mention"),
                                  timestamp=int(time.time()) + 900)
    assert response.status_code == 401
    error = response.json()["error"]
    assert "in the future" in error and "old" not in error
    assert account_rejections(server) == {"stale": 1}


# --- #5, #9: wrong types, deep nesting and NaN are 400, never 500 ---------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(("change", "field"), [
    (lambda e: e.update(user=["U1", "U2"]), "event.user"),
    (lambda e: e.update(channel_type=["im"]), "event.channel_type"),
    (lambda e: e.update(subtype=["bot_message"]), "event.subtype"),
    (lambda e: e.update(bot_id={"id": "B1"}), "event.bot_id"),
    (lambda e: e.update(type={"name": "message"}), "event.type"),
    (lambda e: e.update(text=["hello"]), "event.text"),
    (lambda e: e.update(thread_ts=1700000000.1), "event.thread_ts"),
    (lambda e: e.update(channel="C" * 300), "event.channel"),
])
def test_wrong_types_in_a_signed_slack_event_are_400(serve, fake_slack, change, field):
    server = serve(slack_config(fake_slack.api_url))
    event = slack_message("<@UBOT> hi", etype="message")
    change(event)
    response = server.slack_event("slack-acme", event)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field)
    assert server.turns() == []
    assert account_rejections(server) == {"malformed": 1}


@pytest.mark.parametrize(("body", "words"), [
    (b'{"type": {"x": 1}, "event_id": "Ev1"}', "type should be a string, not an object"),
    (b'{"type": "event_callback", "event_id": ["Ev1"], "event": {"type": "message"}}',
     "event_id should be a string, not an array"),
    (b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "message"}, "x": '
     + _nested(5000).encode() + b"}", "nested"),
    (b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "message"}, "x": '
     + _nested(300).encode() + b"}", "nested"),
    (b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "message", '
     b'"user": "U1", "channel": "C1", "ts": NaN, "text": "hi"}}', "NaN"),
    (b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "message", '
     b'"user": "U1", "channel": "C1", "ts": "1.2", "text": "hi", "score": -Infinity}}',
     "-Infinity"),
    (b'{"type": "url_verification", "challenge": {"a": 1}}', "challenge"),
])
def test_malformed_signed_slack_bodies_are_400(serve, fake_slack, body, words):
    server = serve(slack_config(fake_slack.api_url))
    response = server.slack_post("slack-acme", body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]
    assert server.turns() == []


def test_other_slack_events_keep_their_own_shapes(serve, fake_slack):
    """channel_created's `channel` is an object and user_change's `user` is one: real events,
    recorded as ignored, not refused."""
    server = serve(slack_config(fake_slack.api_url))
    created = {"type": "channel_created", "channel": {"id": "C024BE91L", "name": "fun",
                                                       "created": 1360782804,
                                                       "creator": "U024BE7LH"},
               "event_ts": "1360782804.000100"}
    changed = {"type": "user_change", "user": {"id": "U1", "name": "alice"},
               "event_ts": "1360782805.000100"}
    for event in (created, changed):
        response = server.slack_event("slack-acme", event)
        assert response.status_code == 200, response.text
        turn = server.wait_turn(response.json()["turn_id"])
        assert turn["status"] == "ignored"
        assert event["type"] in turn["route_reason"]


@pytest.mark.parametrize(("change", "field"), [
    (lambda m: m.update(chat="-100123"), "message.chat"),
    (lambda m: m.update({"from": "alice"}), "message.from"),
    (lambda m: m.update(entities=["mention"]), "message.entities[0]"),
    (lambda m: m.update(entities=[{"type": "mention", "offset": "0", "length": 6}]),
     "message.entities[0].offset"),
    (lambda m: m.update(caption_entities=[{"type": "mention", "offset": 0}]),
     "message.caption_entities[0].length"),
    (lambda m: m.update(message_id=1.5), "message.message_id"),
    (lambda m: m.update(chat={"id": 10 ** 30, "type": "private"}), "message.chat.id"),
    (lambda m: m.update(reply_to_message={"from": [BOT_ID]}), "message.reply_to_message.from"),
])
def test_wrong_types_in_a_telegram_update_are_400(serve, fake_telegram, change, field):
    server = serve(telegram_config(fake_telegram.base_url))
    msg = message("hello @switchboard_bot")
    change(msg)
    response = post(server, update(msg))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field)
    assert server.turns() == []


def test_callback_query_whose_message_is_a_string_is_400(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    body = {"update_id": 70001, "callback_query": {"id": "q1", "from": {"id": 7, "is_bot": False,
                                                                         "first_name": "A"},
                                                   "message": "not a message", "data": "x"}}
    response = post(server, body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("callback_query.message should be an object")


@pytest.mark.parametrize("body", [
    b'{"update_id": 70002, "message": {"message_id": 1, "date": 0, "text": "hi", '
    b'"chat": {"id": 42, "type": "private"}, "from": {"id": NaN}}}',
    b'{"update_id": Infinity}',
    b'{"update_id": 70003, "message": ' + _nested(2000).encode() + b"}",
    b'{"update_id": 70004, "message": {"text": "\xff"}}',
])
def test_malformed_telegram_bodies_are_400(serve, fake_telegram, body):
    server = serve(telegram_config(fake_telegram.base_url))
    response = post(server, body)
    assert response.status_code == 400, response.text
    assert server.turns() == []


# --- #8: a bad request we built is permanent ------------------------------------------------------


def test_telegram_thread_id_that_is_not_a_number_is_refused_not_retried(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    msg = message("@switchboard_bot hello", chat_type="supergroup", chat_id=-200,
                  message_thread_id="abc", is_topic_message=True,
                  entities=[{"type": "mention", "offset": 0, "length": 16}])
    response = post(server, update(msg))
    assert response.status_code == 400
    assert response.json()["error"].startswith("message.message_thread_id should be an integer")
    time.sleep(0.3)
    assert fake_telegram.calls("sendMessage") == []


def test_a_recorded_turn_whose_reply_cannot_be_built_fails_once(tmp_path, database_url,
                                                                 fake_telegram):
    """A turn recorded before the webhook checked its types (thread "abc") is recovered after
    the upgrade: its reply cannot be built, so it fails at once with the reason, not six times."""
    from channels.messages import InboundMessage
    from conftest import OPERATORS_YAML
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine

    async def record() -> str:
        engine = create_engine(database_url)
        store = Store(engine, Clock())
        try:
            message = InboundMessage(
                provider="telegram", account="tg", event_id="70005", conversation="-200",
                kind="group", sender="7", text="@switchboard_bot hello", message_id="12",
                thread="abc", mentioned=True, extra={"is_topic": True})
            return (await store.turns.record(message, {"update_id": 70005})).turn_id
        finally:
            store.close()
            await engine.dispose()

    turn_id = asyncio.run(record())
    config = tmp_path / "bindings.yaml"
    config.write_text(telegram_config(fake_telegram.base_url) + OPERATORS_YAML)
    server = Server(config, database_url).start()
    try:
        turn = server.wait_turn(turn_id, until=lambda t: t["status"] in ("failed", "delivered"))
    finally:
        server.stop()
    assert turn["status"] == "failed", turn
    assert turn["delivery_attempts"] == 1
    assert "message_thread_id" in turn["error"] and "abc" in turn["error"]
    assert fake_telegram.calls("sendMessage") == []


# --- property: wrong-typed values at every field we read ------------------------------------------

SLACK_EVENT = {"type": "event_callback", "team_id": "T1", "event_id": "Ev0PROP",
               "event": {"type": "message", "channel": "C0SUPPORT", "user": "U0ALICE",
                         "text": "<@UBOT> hi", "ts": "1700003000.000100",
                         "event_ts": "1700003000.000100", "thread_ts": "1700003000.000001",
                         "channel_type": "channel", "subtype": "thread_broadcast",
                         "bot_id": "B0OTHER"}}
SLACK_PATHS = [("type",), ("event_id",), ("team_id",), ("event",), ("challenge",),
               *(("event", key) for key in SLACK_EVENT["event"])]


def answered_sanely(server: Server, response: httpx.Response) -> None:
    assert response.status_code in (200, 400), response.text
    turn_id = response.json().get("turn_id")
    if turn_id:  # what was recorded reads back as JSON
        assert server.api("GET", f"/api/turns/{turn_id}").status_code == 200


def test_no_wrong_typed_slack_field_is_a_500(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    counter = iter(range(10 ** 6))

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(path=st.sampled_from(SLACK_PATHS), value=VALUES,
           url_verification=st.booleans())
    def check(path: tuple[str, ...], value: Any, url_verification: bool) -> None:
        document = replaced(SLACK_EVENT, ("event_id",), f"Ev0PROP{next(counter)}")
        if url_verification:
            document = {"type": "url_verification", "challenge": "abc", "token": "t"}
            path = path if path[0] != "event" else ("challenge",)
        body = json.dumps(replaced(document, path, value)).encode()
        answered_sanely(server, server.slack_post("slack-acme", body))

    check()


TELEGRAM_MESSAGE = {
    "message_id": 12, "date": 0, "message_thread_id": 77, "is_topic_message": True,
    "chat": {"id": -200, "type": "supergroup", "title": "Team"},
    "from": {"id": 7, "is_bot": False, "first_name": "Ada", "last_name": "L",
             "username": "ada"},
    "sender_chat": {"id": -200, "type": "supergroup", "title": "Team"},
    "text": "@switchboard_bot /new@switchboard_bot hi", "caption": "a caption",
    "entities": [{"type": "mention", "offset": 0, "length": 16},
                 {"type": "bot_command", "offset": 17, "length": 21},
                 {"type": "text_mention", "offset": 0, "length": 1,
                  "user": {"id": BOT_ID, "is_bot": True, "first_name": "Bot"}}],
    "caption_entities": [{"type": "mention", "offset": 0, "length": 1}],
    "reply_to_message": {"message_id": 5, "date": 0, "chat": {"id": -200, "type": "group"},
                         "from": {"id": BOT_ID, "is_bot": True, "first_name": "Bot"},
                         "text": "hi"},
}
TELEGRAM_PATHS = [
    ("update_id",), ("message",),
    *(("message", key) for key in TELEGRAM_MESSAGE),
    *(("message", "chat", key) for key in ("id", "type")),
    *(("message", "from", key) for key in ("id", "is_bot", "username", "first_name",
                                           "last_name")),
    ("message", "sender_chat", "title"), ("message", "entities", 0),
    *(("message", "entities", 2, key) for key in ("type", "offset", "length", "user")),
    ("message", "entities", 2, "user", "id"), ("message", "caption_entities", 0),
    *(("message", "reply_to_message", key) for key in ("message_id", "from", "chat")),
    ("message", "reply_to_message", "from", "id"),
]


def test_no_wrong_typed_telegram_field_is_a_500(serve, fake_telegram):
    server = serve(telegram_config(fake_telegram.base_url))
    counter = iter(range(80000, 10 ** 6))

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(path=st.sampled_from(TELEGRAM_PATHS), value=VALUES,
           kind=st.sampled_from(["message", "edited_message", "callback_query"]))
    def check(path: tuple[str | int, ...], value: Any, kind: str) -> None:
        document = {"update_id": next(counter), "message": TELEGRAM_MESSAGE}
        document = replaced(document, path, value)
        if kind == "callback_query":
            document = {"update_id": document["update_id"],
                        "callback_query": {"id": "q", "from": TELEGRAM_MESSAGE["from"],
                                           "message": document.get("message"), "data": "x"}}
        elif kind != "message" and "message" in document:
            document[kind] = document.pop("message")
        answered_sanely(server, post(server, json.dumps(document).encode()))

    check()

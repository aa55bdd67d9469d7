"""Provider payloads at the adapter edge: real Slack and Telegram payloads (samples/) read as
before, and whatever is thrown at any of their fields is a message or a 400, nothing else."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.errors import RejectedRequest
from channels.messages import InboundMessage
from channels.payload import MAX_DEPTH, load_json
from channels.slack.client import SlackAccount
from channels.telegram.client import TelegramAccount
from channels.text import clean_text
from hostile import JSON, VALUES, paths, replaced
from switchboard.http_errors import rejection_status

SAMPLES = Path(__file__).with_name("samples")
SLACK = json.loads((SAMPLES / "slack_events.json").read_text())
TELEGRAM = json.loads((SAMPLES / "telegram_updates.json").read_text())
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_account() -> SlackAccount:
    account = SlackAccount("acme", bot_token="xoxb-test", signing_secret=SECRET)
    account.bot_user_id, account.bot_id = "UBOT", "BBOT"
    return account


def _telegram_account() -> TelegramAccount:
    account = TelegramAccount("tg", "123:abc", webhook_secret="s3cret")
    account.bot_id, account.username = 999, "switchboard_bot"
    return account


_TELEGRAM_ACCOUNT = _telegram_account()  # building one costs two HTTP clients; reading is pure


def telegram_account() -> TelegramAccount:
    return _TELEGRAM_ACCOUNT


# --- real payloads read as they always were ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SLACK))
def test_real_slack_events_are_read(name: str) -> None:
    sample = SLACK[name]
    account = slack_account()
    payload = account.parse_body(json.dumps(sample["payload"]).encode())
    message = account.to_inbound(payload)
    expect = sample["expect"]
    assert (message.kind, message.sender, message.mentioned, message.thread,
            message.message_id) == (expect["kind"], expect["sender"], expect["mentioned"],
                                    expect["thread"], expect["message_id"])
    if expect["ignored"] is None:
        assert message.ignore_reason is None
    else:
        assert message.ignore_reason is not None
        assert message.ignore_reason.startswith(expect["ignored"])
    assert "token" not in message.raw
    assert message.raw["event"] == sample["payload"]["event"]


@pytest.mark.parametrize("name", sorted(TELEGRAM))
def test_real_telegram_updates_are_read(name: str) -> None:
    sample = TELEGRAM[name]
    account = telegram_account()
    message = account.to_inbound(account.parse_body(json.dumps(sample["update"]).encode()))
    expect = sample["expect"]
    assert (message.kind, message.sender, message.sender_name, message.mentioned,
            message.conversation, message.thread, message.extra.get("command")) == (
        expect["kind"], expect["sender"], expect["sender_name"], expect["mentioned"],
        expect["conversation"], expect["thread"], expect["command"])
    if expect["ignored"] is None:
        assert message.ignore_reason is None
    else:
        assert message.ignore_reason is not None
        assert message.ignore_reason.startswith(expect["ignored"])
    assert message.raw == sample["update"]


# --- anything at any field: a message or a 400 ---------------------------------------------------

SLACK_CASES = [(name, path) for name in sorted(SLACK) for path in paths(SLACK[name]["payload"])]
TELEGRAM_CASES = [(name, path) for name in sorted(TELEGRAM)
                  for path in paths(TELEGRAM[name]["update"])]


def read_or_refused(read: Any, body: bytes) -> InboundMessage | None:
    """What the adapter made of `body`: a message (whose text fields every database stores),
    or None for a 400. Any other outcome fails the test."""
    try:
        message = read(body)
    except RejectedRequest as error:
        assert (error.reason, rejection_status(error.reason)) == ("malformed", 400)
        assert len(str(error)) < 1000
        return None
    for value in (message.text, message.sender, message.sender_name, message.conversation,
                  message.message_id, message.event_id, message.thread or ""):
        assert isinstance(value, str)
        value.encode("utf-8")
    json.dumps(message.raw, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return message


@settings(max_examples=600, deadline=None)
@given(case=st.sampled_from(SLACK_CASES), value=VALUES)
def test_any_value_at_any_slack_field_is_a_message_or_a_400(case: tuple[str, tuple[Any, ...]],
                                                            value: Any) -> None:
    name, path = case
    account = slack_account()
    body = json.dumps(replaced(SLACK[name]["payload"], path, value)).encode()
    read_or_refused(lambda b: account.to_inbound(account.parse_body(b)), body)


@settings(max_examples=600, deadline=None)
@given(case=st.sampled_from(TELEGRAM_CASES), value=VALUES)
def test_any_value_at_any_telegram_field_is_a_message_or_a_400(
        case: tuple[str, tuple[Any, ...]], value: Any) -> None:
    name, path = case
    account = telegram_account()
    body = json.dumps(replaced(TELEGRAM[name]["update"], path, value)).encode()
    read_or_refused(lambda b: account.to_inbound(account.parse_body(b)), body)


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(st.sampled_from(["type", "event_id", "team_id", "event",
                                                 "challenge", "token"]), VALUES, max_size=5),
       event=st.dictionaries(st.sampled_from(["type", "channel", "user", "bot_id", "text", "ts",
                                              "event_ts", "thread_ts", "channel_type",
                                              "subtype"]), VALUES, max_size=10))
def test_any_slack_document_is_a_message_or_a_400(document: dict[str, Any],
                                                   event: dict[str, Any]) -> None:
    account = slack_account()
    body = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": event,
                       **document}).encode()
    read_or_refused(lambda b: account.to_inbound(account.parse_body(b)), body)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["message", "edited_message", "channel_post", "callback_query",
                             "my_chat_member"]),
       message=st.dictionaries(st.sampled_from([
           "message_id", "chat", "from", "sender_chat", "text", "caption", "entities",
           "caption_entities", "is_topic_message", "message_thread_id", "reply_to_message",
           "sticker", "new_chat_members", "message"]), VALUES, max_size=8))
def test_any_telegram_document_is_a_message_or_a_400(kind: str, message: dict[str, Any]) -> None:
    account = telegram_account()
    read_or_refused(lambda b: account.to_inbound(account.parse_body(b)),
                    json.dumps({"update_id": 1, kind: message}).encode())


# --- the JSON edge: decode strictly, clean what no database stores -------------------------------


@given(st.text())
def test_clean_text_leaves_only_what_utf8_encodes(value: str) -> None:
    cleaned = clean_text(value)
    cleaned.encode("utf-8")
    assert "\x00" not in cleaned
    assert len(cleaned) <= len(value)  # a split surrogate pair is joined into one character
    if not any("\ud800" <= c <= "\udfff" or c == "\x00" for c in value):
        assert cleaned == value


@given(st.dictionaries(st.text(max_size=6), JSON, max_size=5),
       st.lists(st.sampled_from(["\ud800", "\udfff", "\x00", "\ud83d\ude00", "ok"]), max_size=4))
def test_load_json_gives_what_every_database_stores(document: dict[str, Any],
                                                    odd: list[str]) -> None:
    """Lone surrogates and NUL (only ever as \\u escapes) become U+FFFD in keys and values;
    anything else, real surrogate pairs included, reads back unchanged."""
    raw = json.dumps({**document, "odd": "".join(odd), "".join(odd): 1}).encode()
    loaded = load_json(raw)
    json.dumps(loaded, ensure_ascii=False).encode("utf-8")
    assert all("\x00" not in key for key in loaded)
    if b"\\u0000" not in raw and not any(part in ("\ud800", "\udfff") for part in odd):
        assert loaded == json.loads(raw)


@pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": [Infinity]}', b'{"a": -Infinity}',
                                  b'{"a": 1e999999}'])
def test_non_standard_json_constants_are_refused(body: bytes) -> None:
    try:
        loaded = load_json(body)
    except RejectedRequest as error:
        assert rejection_status(error.reason) == 400
        return
    # 1e999999 is standard JSON that Python reads as inf; it must not be stored as Infinity
    assert all(not isinstance(v, float) or math.isfinite(v) for v in loaded.values()), loaded


def test_depth_up_to_the_limit_is_read_and_beyond_it_refused() -> None:
    def nested(depth: int) -> bytes:  # the outer object is one level
        return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    assert load_json(nested(MAX_DEPTH))
    for depth in (MAX_DEPTH + 1, 900, 100_000):
        with pytest.raises(RejectedRequest) as caught:
            load_json(nested(depth))
        assert rejection_status(caught.value.reason) == 400 and "nested" in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), signature=st.text(max_size=80),
       timestamp=st.one_of(st.text(max_size=20), st.integers().map(str)))
def test_slack_verify_refuses_any_forgery_with_a_401(body: bytes, signature: str,
                                                     timestamp: str) -> None:
    account = slack_account()
    headers = {"x-slack-request-timestamp": timestamp, "x-slack-signature": signature}
    with pytest.raises(RejectedRequest) as caught:
        account.verify(headers, body)
    assert rejection_status(caught.value.reason) == 401


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200))
def test_a_correct_signature_on_any_bytes_is_verified_then_read_or_refused(body: bytes) -> None:
    account = slack_account()
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body,
                      hashlib.sha256).hexdigest()
    account.verify({"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest}"}, body)
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        try:
            account.parse_body(body, content_type)
        except RejectedRequest as error:
            assert rejection_status(error.reason) == 400

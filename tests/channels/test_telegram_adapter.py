"""The Telegram adapter: what an update becomes, and what reaches Telegram on delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from channels.errors import DeliveryError, RejectedRequest
from channels.messages import OutboundMessage
from channels.telegram.client import TelegramAccount, split_text
from fakes.telegram_api import FakeTelegramAPI
from switchboard.http_errors import rejection_status

BOT_ID = 999
USER = {"id": 42, "is_bot": False, "first_name": "Ada", "last_name": "L", "username": "ada"}
GROUP = {"id": -100123, "type": "supergroup", "title": "Team"}
CHANNEL_POST = {"message_id": 3, "date": 0, "text": "news", "chat": {"id": -9, "type": "channel"}}
CALLBACK = {"id": "q", "from": USER, "data": "yes"}


@pytest.fixture
def account() -> TelegramAccount:
    """An account that knows who it is without calling getMe."""
    acc = TelegramAccount("main", "123:abc", webhook_secret="s3cret-Token_1")
    acc.bot_id, acc.username = BOT_ID, "switchboard_bot"
    return acc


@pytest.fixture
def fake() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI() as server:
        yield server


@asynccontextmanager
async def connected(fake: FakeTelegramAPI) -> AsyncIterator[TelegramAccount]:
    acc = TelegramAccount("main", "123:abc", webhook_secret="s3cret", base_url=fake.base_url)
    await acc.start()
    try:
        yield acc
    finally:
        await acc.close()


def message(text: str | None = None, chat: dict[str, Any] = GROUP, **fields: Any) -> dict:
    msg: dict[str, Any] = {"message_id": 10, "date": 0, "chat": chat, "from": USER, **fields}
    if text is not None:
        msg["text"] = text
    return {"update_id": 5000, "message": msg}


def entity(kind: str, offset: int, length: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "offset": offset, "length": length, **fields}


def test_private_chat_is_a_dm_for_us(account: TelegramAccount) -> None:
    update = message("/New hello", chat={"id": 42, "type": "private", "first_name": "Ada"},
                     entities=[entity("bot_command", 0, 4)])  # fmt: skip
    msg = account.to_inbound(update)
    assert (msg.provider, msg.account, msg.event_id) == ("telegram", "main", "5000")
    assert (msg.kind, msg.conversation, msg.sender, msg.sender_name) == ("dm", "42", "42", "ada")
    assert (msg.text, msg.message_id, msg.thread) == ("/New hello", "10", None)
    assert msg.mentioned and msg.ignore_reason is None
    assert msg.extra["command"] == "new" and msg.raw is update


def test_group_message_without_mention_is_not_for_us(account: TelegramAccount) -> None:
    msg = account.to_inbound(message("lunch anyone?"))
    assert (msg.kind, msg.conversation, msg.mentioned, msg.ignore_reason) == (
        "group", "-100123", False, None,
    )  # fmt: skip
    assert "command" not in msg.extra


def test_mention_ignores_case_but_not_other_names(account: TelegramAccount) -> None:
    ours = message("@SwitchBoard_BOT hi", entities=[entity("mention", 0, 16)])
    other = message("@switchboard_bot2 hi", entities=[entity("mention", 0, 17)])
    assert account.to_inbound(ours).mentioned
    assert not account.to_inbound(other).mentioned


def test_text_mention_of_the_bot_by_id(account: TelegramAccount) -> None:
    ours = message("Switchboard help", entities=[entity("text_mention", 0, 11, user={"id": 999})])
    other = message("Ada help", entities=[entity("text_mention", 0, 3, user={"id": 7})])
    assert account.to_inbound(ours).mentioned
    assert not account.to_inbound(other).mentioned


def test_command_for_us_for_another_bot_and_for_nobody(account: TelegramAccount) -> None:
    ours = account.to_inbound(
        message("/New@Switchboard_Bot x", entities=[entity("bot_command", 0, 20)])
    )
    other = account.to_inbound(message("/new@otherbot x", entities=[entity("bot_command", 0, 13)]))
    plain = account.to_inbound(message("/new x", entities=[entity("bot_command", 0, 4)]))
    assert ours.mentioned and ours.extra["command"] == "new"
    assert not other.mentioned and "command" not in other.extra
    assert not plain.mentioned and "command" not in plain.extra


def test_reply_to_the_bots_message_is_a_mention(account: TelegramAccount) -> None:
    reply = {"message_id": 9, "date": 0, "chat": GROUP, "text": "hi", "from": {"id": BOT_ID}}
    assert account.to_inbound(message("thanks", reply_to_message=reply)).mentioned
    reply_to_person = dict(reply, **{"from": USER})
    assert not account.to_inbound(message("thanks", reply_to_message=reply_to_person)).mentioned


def test_forum_topic_root_is_not_a_reply_to_the_bot(account: TelegramAccount) -> None:
    created = {"name": "Ops", "icon_color": 1}
    root = {"message_id": 77, "date": 0, "chat": GROUP, "from": {"id": BOT_ID, "is_bot": True},
            "message_thread_id": 77, "forum_topic_created": created}  # fmt: skip
    topic = {"message_thread_id": 77, "is_topic_message": True}
    msg = account.to_inbound(message("status?", reply_to_message=root, **topic))
    assert (msg.thread, msg.mentioned, msg.extra["is_topic"]) == ("77", False, True)
    answer = {"message_id": 80, "date": 0, "chat": GROUP, "from": {"id": BOT_ID}, "text": "ok"}
    assert account.to_inbound(message("more", reply_to_message=answer, **topic)).mentioned


def test_caption_counts_as_text_and_mention(account: TelegramAccount) -> None:
    update = message(photo=[{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}],
                     caption="@switchboard_bot what is this?",
                     caption_entities=[entity("mention", 0, 16)])  # fmt: skip
    msg = account.to_inbound(update)
    assert (msg.text, msg.mentioned, msg.ignore_reason) == (
        "@switchboard_bot what is this?", True, None,
    )  # fmt: skip


def test_emoji_before_mention_uses_utf16_offsets(account: TelegramAccount) -> None:
    text = "👍🏽 hi @switchboard_bot"  # two astral characters: 4 UTF-16 units, 2 code points
    assert text[8:24] != "@switchboard_bot"  # code-point slicing would miss the mention
    msg = account.to_inbound(message(text, entities=[entity("mention", 8, 16)]))
    assert msg.mentioned


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        (message(sticker={"file_id": "s"}), "a message with no text (sticker)"),
        (message(new_chat_members=[USER]), "a service message (new_chat_members)"),
        ({"update_id": 1, "edited_message": message("fixed typo")["message"]}, "an edited message"),
        ({"update_id": 1, "channel_post": CHANNEL_POST}, "a channel post"),
        (message("hi", **{"from": {"id": 5, "is_bot": True}}), "a message from a bot"),
        ({"update_id": 1, "callback_query": CALLBACK}, "an update of type callback_query, which"),
    ],
)
def test_updates_that_are_recorded_but_not_answered(
    account: TelegramAccount, update: dict, reason: str
) -> None:
    msg = account.to_inbound(update)
    assert msg.ignore_reason is not None and msg.ignore_reason.startswith(reason)
    assert msg.event_id == str(update["update_id"])


def test_a_photo_without_a_caption_is_answered_a_sticker_is_not(account: TelegramAccount
                                                                ) -> None:
    """A screenshot dropped into the chat reaches the agent (issue 16); a sticker is no file."""
    assert account.to_inbound(message(photo=[{"file_id": "p"}])).ignore_reason is None
    assert account.to_inbound(message(sticker={"file_id": "s"})).ignore_reason is not None


def test_verify_checks_the_secret_header(account: TelegramAccount) -> None:
    account.verify({"x-telegram-bot-api-secret-token": "s3cret-Token_1"})
    account.verify({"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token_1"})
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"}):
        with pytest.raises(RejectedRequest) as caught:
            account.verify(headers)
        assert (caught.value.reason, rejection_status(caught.value.reason)) == ("bad_secret", 403)
        assert "X-Telegram-Bot-Api-Secret-Token" in str(caught.value)


@pytest.mark.parametrize("body", [b"{not json", b"[1]", b'{"message": {}}', b'{"update_id": "1"}'])
def test_parse_body_refuses_malformed_updates(account: TelegramAccount, body: bytes) -> None:
    with pytest.raises(RejectedRequest) as caught:
        account.parse_body(body)
    assert (caught.value.reason, rejection_status(caught.value.reason)) == ("malformed", 400)


def test_split_text_prefers_paragraphs_then_lines_then_hard_cuts() -> None:
    assert split_text("a" * 5 + "\n\n" + "b" * 3 + "\n" + "c", limit=10) == ["aaaaa", "bbb\nc"]
    assert split_text("aaaa\nbbbb\ncccc", limit=10) == ["aaaa\nbbbb", "cccc"]
    assert split_text("x" * 25, limit=10) == ["x" * 10, "x" * 10, "x" * 5]
    assert split_text("short") == ["short"]


@pytest.mark.asyncio
async def test_deliver_replies_in_the_topic_quoting_the_message(fake: FakeTelegramAPI) -> None:
    async with connected(fake) as acc:
        assert (acc.bot_id, acc.username) == (999, "switchboard_bot")
        out = OutboundMessage("telegram", "main", "-100123", "hello", thread="77", reply_to="10")
        sent_id = await acc.deliver(out)
    (call,) = fake.calls("sendMessage")
    assert sent_id == "1"
    assert call["chat_id"] == -100123 and call["text"] == "hello"
    assert call["message_thread_id"] == 77
    assert call["reply_parameters"] == {"message_id": 10, "allow_sending_without_reply": True}
    assert "reply_to_message_id" not in call


@pytest.mark.asyncio
async def test_long_reply_is_split_on_lines_in_order(fake: FakeTelegramAPI) -> None:
    lines = [f"{i:03d}" + "x" * 96 for i in range(90)]  # 90 lines of 99 chars + 89 "\n"
    text = "\n".join(lines) + "x"
    assert len(text) == 9000
    async with connected(fake) as acc:
        first_id = await acc.deliver(OutboundMessage("telegram", "main", "42", text, reply_to="3"))
    calls = fake.calls("sendMessage")
    assert len(calls) == 3 and first_id == "1"
    assert all(len(c["text"]) <= 4096 for c in calls)
    assert "\n".join(c["text"] for c in calls) == text
    assert all(c["text"].endswith("x") for c in calls)  # cut at line ends, not mid-line
    assert "reply_parameters" in calls[0]
    assert not any("reply_parameters" in c for c in calls[1:])


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("code", "words"),
    [(403, "Forbidden: bot was blocked by the user"), (400, "Bad Request: chat not found")],
)
async def test_refusals_are_permanent_in_telegrams_words(
    fake: FakeTelegramAPI, code: int, words: str
) -> None:
    fake.fail_next("sendMessage", code, words)
    async with connected(fake) as acc:
        with pytest.raises(DeliveryError) as caught:
            await acc.deliver(OutboundMessage("telegram", "main", "42", "hi"))
    assert str(caught.value) == words
    assert caught.value.permanent and caught.value.retry_after is None


@pytest.mark.asyncio
async def test_flood_control_is_retried_after_telegrams_delay(fake: FakeTelegramAPI) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    async with connected(fake) as acc:
        with pytest.raises(DeliveryError) as caught:
            await acc.deliver(OutboundMessage("telegram", "main", "42", "hi"))
        assert await acc.deliver(OutboundMessage("telegram", "main", "42", "hi")) == "1"
    assert str(caught.value) == "Too Many Requests: retry after 1"
    assert not caught.value.permanent and caught.value.retry_after == 1.0


@pytest.mark.asyncio
async def test_polling_returns_raw_updates_and_honours_offset(
    fake: FakeTelegramAPI, account: TelegramAccount
) -> None:
    first = fake.push_update({"message": message("one")["message"]})
    fake.push_update({"message": message("two")["message"]})
    async with connected(fake) as acc:
        await acc.set_webhook("https://example.test/telegram/main")
        assert fake.webhook["secret_token"] == "s3cret"
        await acc.delete_webhook()
        updates = await acc.get_updates(None, 0)
        assert [u["message"]["text"] for u in updates] == ["one", "two"]
        assert updates[0] == first
        assert await acc.get_updates(updates[-1]["update_id"] + 1, 0) == []
    assert account.to_inbound(updates[1]).text == "two"

"""Telegram's live replies: `sendChatAction typing` while the agent works (it lasts 5 s, so
again every 4 s), and the answer as it is written: `sendMessageDraft` in private chats (an
ephemeral preview, replaced by the final `sendMessage`), `sendMessage` then `editMessageText`
in groups and topics ("message is not modified" is not an error).

Limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about one message per second per chat, 20 per minute per group, 30 per second per bot.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

from telegram.error import TelegramError

from channels.errors import DeliveryError
from channels.live import LIVE_KEY, Pace, Rate, digest
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from channels.telegram.client import (
    MESSAGE_LIMIT,
    TelegramAccount,
    TelegramRefusal,
    delivery_error,
    split_text,
)

PACE = Pace(conversation=Rate(1, 1), group=Rate(20, 60), account=Rate(30, 1, burst=30),
            label="Telegram's", conversation_word="per-chat")
NOT_MODIFIED = "message is not modified"
GONE = ("message to edit not found", "message_id_invalid", "message can't be edited")


def _thread(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _refused(exc: TelegramError, words: tuple[str, ...]) -> bool:
    return isinstance(exc, TelegramRefusal) and any(w in exc.description.lower() for w in words)


class TelegramWorking:
    """The typing action in the chat (and topic), every 4 s while the agent works."""

    def __init__(self, client: TelegramAccount, message: InboundMessage,
                 refresh: float = 4.0) -> None:
        self.refresh: float | None = refresh
        self.client = client
        self.chat = message.conversation
        self.thread = _thread(message.thread)

    async def show(self) -> str:
        try:
            await self.client.bot.send_chat_action(chat_id=self.chat, action="typing",
                                                   message_thread_id=self.thread)
        except TelegramError as exc:
            raise delivery_error(exc) from exc
        return "typing"

    async def clear(self, replied: bool) -> None:
        """Nothing to take away: the reply (or 5 s) ends the typing action."""


class TelegramLiveReply:
    """`draft` in private chats, `edit` (a sent message, edited) in groups and topics."""

    limit = MESSAGE_LIMIT

    def __init__(self, client: TelegramAccount, message: InboundMessage, out: OutboundMessage,
                 resume: dict[str, Any] | None) -> None:
        self.client = client
        self.out = out
        self.mode = "draft" if message.kind == "dm" else "edit"
        # a draft id is any non-zero number; the same one for the same turn (a restart goes on)
        self.draft_id = zlib.crc32(f"{message.account}:{message.event_id}".encode()) or 1
        self.message_id: str | None = str(self.draft_id) if self.mode == "draft" else None
        if resume is not None:
            self.mode, self.message_id = str(resume.get("mode")), str(resume.get("id"))
        self.sent = ""

    async def start(self, text: str) -> None:
        if self.mode == "draft":
            await self.update(text)
            return
        self.message_id = await self.client.deliver(replace(self.out, text=text))
        self.sent = text

    async def update(self, text: str) -> None:
        bot, chat = self.client.bot, self.out.conversation
        try:
            if self.mode == "draft":
                await bot.send_message_draft(chat_id=int(chat), draft_id=self.draft_id,
                                             text=text, message_thread_id=_thread(self.out.thread))
            else:
                await bot.edit_message_text(chat_id=chat, message_id=int(self.message_id or 0),
                                            text=text)
        except TelegramError as exc:
            if not _refused(exc, (NOT_MODIFIED,)):
                raise delivery_error(exc) from exc
        except ValueError as exc:  # a chat or message id that is not a number
            raise DeliveryError(f"the live message cannot be sent: {exc}", permanent=True) \
                from None
        self.sent = text

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "id": self.message_id, "shown": len(self.sent),
                "digest": digest(self.sent)}

    async def abandon(self) -> None:
        """A draft fades by itself and an edited message stays as it is: nothing to close."""


async def finish(client: TelegramAccount, out: OutboundMessage) -> DeliveryReceipt:
    """The final delivery of a reply shown live. A draft: the final message is sent (it
    replaces the draft). An edited message: edited to the final text (the rest of a long reply
    in new messages); when it is gone, one fresh complete message instead."""
    state = out.extra[LIVE_KEY]
    plain = replace(out, extra={k: v for k, v in out.extra.items() if k != LIVE_KEY})
    if state.get("mode") != "edit":
        sent = await client.deliver(plain)
        return DeliveryReceipt(sent, {LIVE_KEY: {"finished": True,
                                                 "how": "sent the final message in place of "
                                                        "the draft"}})
    first, *rest = split_text(out.text)
    message_id = str(state.get("id"))
    try:
        await client.bot.edit_message_text(chat_id=out.conversation, message_id=int(message_id),
                                           text=first)
    except ValueError:  # no message id to edit: the reply goes as a fresh message
        return DeliveryReceipt(await client.deliver(plain), {LIVE_KEY: {
            "finished": False, "error": "no message to edit",
            "how": "one fresh complete message"}})
    except TelegramError as exc:
        if _refused(exc, GONE):
            fresh = await client.deliver(plain)
            return DeliveryReceipt(fresh, {LIVE_KEY: {"finished": False,
                                                      "error": str(exc.message),
                                                      "how": "one fresh complete message"}})
        if not _refused(exc, (NOT_MODIFIED,)):
            raise delivery_error(exc) from exc
    for piece in rest:  # a long reply continues in new messages, at paragraph breaks
        await client.deliver(replace(plain, text=piece, reply_to=None))
    return DeliveryReceipt(message_id, {LIVE_KEY: {"finished": True,
                                                   "how": "edited the message shown so far to "
                                                          "the final text",
                                                   **({"continued_in": len(rest)} if rest
                                                      else {})}})

"""Telegram adapter: webhook checks, update → InboundMessage, and sendMessage delivery.

Built on python-telegram-bot's `Bot` for the HTTP side only; the routing decisions (mentions,
commands, what is ignored) are made here on the raw update dicts, so webhook and polling
updates go through the same code.
"""

from __future__ import annotations

import hmac
import json
import re
import warnings
from collections.abc import Mapping
from typing import Any

from telegram import Bot, ReplyParameters
from telegram.error import TelegramError
from telegram.request import HTTPXRequest
from telegram.warnings import PTBUserWarning

from channels.errors import DeliveryError, RejectedRequest
from channels.live import split_text as split_at
from channels.messages import ConversationKind, InboundMessage, OutboundMessage
from channels.payload import load_json, parse
from channels.telegram.files import TelegramFiles, message_files
from channels.telegram.payload import (
    CONTENT_KEYS,
    SERVICE_KEYS,
    TelegramEntity,
    TelegramMessage,
    TelegramUpdate,
    TelegramUpdatePayload,
    TelegramUser,
)

PROVIDER = "telegram"
MESSAGE_LIMIT = 4096
SECRET_HEADER = "x-telegram-bot-api-secret-token"
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")

_CHAT_KINDS: dict[str, ConversationKind] = {
    "private": "dm",
    "group": "group",
    "supergroup": "group",
    "channel": "channel",
}
_MESSAGE_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post")


class TelegramRefusal(TelegramError):
    """Telegram answered `ok: false`; `description` is Telegram's text, word for word.

    PTB's own exceptions rewrite it ("Bad Request: chat not found" becomes "Chat not found",
    and capitalize() lowercases the rest), and its RetryAfter warns on every 429 in PTB 22.
    """

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any]) -> None:
        super().__init__(description)
        self.message = description  # undo TelegramError's prefix stripping
        self.error_code = error_code
        self.description = description
        self.parameters = parameters


# get_updates() asks PTB for the raw getUpdates result on purpose (the update dicts exactly as
# Telegram sent them, the shape webhooks get); PTB warns about that on every poll.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'",
                        category=PTBUserWarning)


class _TelegramRequest(HTTPXRequest):
    """An HTTPXRequest (PTB's hook for the transport) that raises Telegram's refusals unchanged."""

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
        if not 200 <= code <= 299:
            try:
                body = json.loads(payload)
            except ValueError:
                return code, payload  # not Telegram talking (a proxy?): PTB's NetworkError
            if isinstance(body, dict) and isinstance(body.get("description"), str):
                parameters = body.get("parameters")
                parameters = parameters if isinstance(parameters, dict) else {}
                raise TelegramRefusal(code, body["description"], parameters)
        return code, payload


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """A reply cut into messages Telegram takes (4096 characters), at paragraph or line
    breaks where it can (`channels.live.split_text`)."""
    return split_at(text, limit)


def _utf16_slice(text: str, offset: int, length: int) -> str:
    """The entity's text: Telegram counts offsets in UTF-16 code units, not characters."""
    units = text.encode("utf-16-le")
    return units[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def _entities(message: TelegramMessage) -> list[tuple[TelegramEntity, str]]:
    """(entity, its text) for the text's entities and the caption's entities."""
    found: list[tuple[TelegramEntity, str]] = []
    for text, entities in ((message.text, message.entities),
                           (message.caption, message.caption_entities)):
        for entity in entities:
            found.append((entity, _utf16_slice(text or "", entity.offset, entity.length)))
    return found


def _display_name(user: TelegramUser) -> str:
    if user.username:
        return user.username
    return " ".join(n for n in (user.first_name, user.last_name, user.title) if n)


class TelegramAccount:
    """One Telegram bot: its token, webhook secret and HTTP clients."""

    def __init__(
        self,
        name: str,
        token: str,
        webhook_secret: str = "",
        base_url: str = "https://api.telegram.org/bot",
        mode: str = "webhook",
    ) -> None:
        if mode not in ("webhook", "polling"):
            raise ValueError(f"Telegram account {name!r}: mode must be webhook or polling")
        if webhook_secret and not _SECRET_RE.fullmatch(webhook_secret):
            raise ValueError(
                f"Telegram account {name!r}: webhook_secret must be 1-256 characters of"
                " A-Z, a-z, 0-9, _ and - (Telegram refuses others)"
            )
        self.name = name
        self.webhook_secret = webhook_secret
        self.base_url = base_url
        self.mode = mode
        self.bot_id: int | None = None
        self.username: str = ""
        base_file_url = base_url
        if base_url.endswith("/bot"):
            base_file_url = base_url.removesuffix("/bot") + "/file/bot"
        self._poll_read_timeout = 10.0  # getUpdates waits this plus the poll's own timeout
        self._bot = Bot(
            token,
            base_url=base_url,
            base_file_url=base_file_url,
            request=_TelegramRequest(
                connection_pool_size=64,
                connect_timeout=5.0,
                read_timeout=15.0,
                write_timeout=15.0,
                pool_timeout=5.0,
            ),
            get_updates_request=_TelegramRequest(
                connection_pool_size=2,
                connect_timeout=5.0,
                read_timeout=self._poll_read_timeout,
                write_timeout=10.0,
                pool_timeout=5.0,
            ),
        )

        self.files = TelegramFiles(self._bot)

    async def start(self) -> None:
        """Open the HTTP clients and learn who the bot is (getMe)."""
        await self._bot.initialize()
        self.bot_id = self._bot.id
        self.username = self._bot.username or ""

    async def close(self) -> None:
        """Close the HTTP clients."""
        await self.files.close()
        await self._bot.shutdown()

    @property
    def bot(self) -> Bot:
        """PTB's Bot, for the calls of `channels.telegram.interactions` and `.live`."""
        return self._bot

    # -- webhook side ---------------------------------------------------------------------

    def verify(self, headers: Mapping[str, str]) -> None:
        """Refuse a webhook request whose secret token header is not ours (constant-time)."""
        if not self.webhook_secret:
            raise RejectedRequest(
                "bad_secret",
                f"Telegram account {self.name!r} has no webhook_secret, so webhook requests"
                " cannot be checked; set one and call set_webhook again",
            )
        given = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER), None)
        if given is None:
            raise RejectedRequest(
                "bad_secret",
                f"the request has no X-Telegram-Bot-Api-Secret-Token header; it did not come"
                f" from Telegram's webhook for account {self.name!r}",
            )
        if not hmac.compare_digest(given.encode(), self.webhook_secret.encode()):
            raise RejectedRequest(
                "bad_secret",
                f"the X-Telegram-Bot-Api-Secret-Token header does not match the webhook secret"
                f" of account {self.name!r}",
            )

    def parse_body(self, body: bytes) -> dict[str, Any]:
        """Decode a webhook body into an update dict, or refuse it as malformed."""
        update = load_json(body)
        parse(TelegramUpdate, update)
        return update

    # -- update → InboundMessage ----------------------------------------------------------

    def to_inbound(self, update: dict[str, Any]) -> InboundMessage:
        """Reduce a raw update to an InboundMessage; updates not to answer get ignore_reason.
        RejectedRequest (400) when a field it reads has the wrong type."""
        update_id = parse(TelegramUpdate, update).update_id
        update_type = next((k for k in update if k != "update_id"), "empty")
        payload = update.get(update_type, {})
        if update_type in _MESSAGE_UPDATES:
            message = parse(TelegramMessage, payload, update_type)
            user = message.sender or message.sender_chat
        else:
            other = parse(TelegramUpdatePayload, payload, update_type)
            message = other.message or TelegramMessage()
            user = other.sender or message.sender_chat
        user = user or TelegramUser()
        chat = message.chat
        kind = _CHAT_KINDS.get(chat.type, "dm")
        thread = message.message_thread_id if message.is_topic_message else None

        extra: dict[str, Any] = {"is_topic": message.is_topic_message, "chat_type": chat.type}
        files = message_files(payload) if update_type == "message" else []
        if files:
            extra["files"] = files
        command = self._command(message, private=kind == "dm")
        if command is not None and update_type == "message":
            extra["command"] = command
        return InboundMessage(
            provider=PROVIDER,
            account=self.name,
            event_id=str(update_id),
            conversation=str(chat.id) if chat.id is not None else "",
            kind=kind,
            sender=str(user.id) if user.id is not None else "",
            text=message.text or message.caption or "",
            message_id=str(message.message_id) if message.message_id is not None else "",
            thread=str(thread) if thread is not None else None,
            mentioned=kind == "dm" or self._addresses_bot(message),
            sender_name=_display_name(user),
            ignore_reason=self._ignore_reason(update_type, message, user, bool(files)),
            raw=update,
            extra=extra,
        )

    def _ignore_reason(
        self, update_type: str, message: TelegramMessage, user: TelegramUser,
        has_files: bool = False,
    ) -> str | None:
        if update_type in ("channel_post", "edited_channel_post"):
            return "a channel post; posts in channels are not answered"
        if update_type == "edited_message":
            return "an edited message; edits are not answered"
        if update_type != "message":
            return f"an update of type {update_type[:64]}, which is not answered"
        if user.is_bot:
            return "a message from a bot; bots are not answered"
        if message.text or message.caption or has_files:
            return None
        service = message.first_key(SERVICE_KEYS)
        if service:
            return f"a service message ({service}), which is not answered"
        return f"a message with no text ({message.first_key(CONTENT_KEYS) or 'unknown content'})"

    def _is_our_username(self, name: str) -> bool:
        return bool(self.username) and name.lower() == self.username.lower()

    def _addresses_bot(self, message: TelegramMessage) -> bool:
        """Whether a group message is meant for this bot: @mention, /cmd@bot or a reply."""
        for entity, value in _entities(message):
            kind = entity.type
            if kind == "mention" and self._is_our_username(value.removeprefix("@")):
                return True
            if kind == "text_mention" and entity.user and entity.user.id == self.bot_id:
                return True
            target = value.partition("@")[2]
            if kind == "bot_command" and target and self._is_our_username(target):
                return True
        reply = message.reply_to_message
        if self.bot_id is None or reply is None or reply.sender is None \
                or reply.sender.id != self.bot_id:
            return False
        # Forum trap: in a topic, messages "reply" to the topic's creation service message,
        # which is the bot's own when the bot created the topic.
        topic_root = reply.message_id == message.message_thread_id
        return not (topic_root or reply.has("forum_topic_created"))

    def _command(self, message: TelegramMessage, *, private: bool) -> str | None:
        """The /command at the start of the text, if addressed to us (or any in a DM)."""
        for entity in message.entities:
            if entity.type != "bot_command" or entity.offset != 0:
                continue
            value = _utf16_slice(message.text or "", 0, entity.length).removeprefix("/")
            name, _, target = value.partition("@")
            if (target and self._is_our_username(target)) or (not target and private):
                return name.lower()
        return None

    # -- Bot API calls --------------------------------------------------------------------

    async def deliver(self, out: OutboundMessage) -> str:
        """Send a reply, split at 4096 characters; return the first sent message's id.

        Only the first piece quotes the user's message. If a later piece fails, the earlier
        ones stay sent and the DeliveryError says what Telegram said.
        """
        thread = _whole_number("message_thread_id", out.thread)
        quoted = _whole_number("reply_parameters.message_id", out.reply_to)
        first_id = ""
        for index, chunk in enumerate(split_text(out.text)):
            kwargs: dict[str, Any] = {}
            if thread is not None:
                kwargs["message_thread_id"] = thread
            if quoted is not None and index == 0:
                kwargs["reply_parameters"] = ReplyParameters(
                    message_id=quoted, allow_sending_without_reply=True
                )
            try:
                sent = await self._bot.send_message(chat_id=out.conversation, text=chunk, **kwargs)
            except TelegramError as exc:
                raise delivery_error(exc) from exc
            except (ValueError, TypeError) as exc:  # the request could not be built or encoded
                raise DeliveryError(
                    f"the reply could not be sent as built: {exc}", permanent=True
                ) from exc
            first_id = first_id or str(sent.message_id)
        return first_id


    async def get_updates(self, offset: int | None, timeout: int) -> list[dict[str, Any]]:
        """Long-poll getUpdates; returns the raw update dicts, the same shape as webhooks."""
        # PTB's raw call: the result as Telegram sent it, not rebuilt as Update objects. The read
        # timeout waits the long poll out, as Bot.get_updates() does.
        api_kwargs: dict[str, Any] = {"timeout": timeout}
        if offset is not None:
            api_kwargs["offset"] = offset
        result = await self._bot.do_api_request(
            "getUpdates", api_kwargs=api_kwargs, read_timeout=self._poll_read_timeout + timeout
        )
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    async def delete_webhook(self) -> None:
        """Stop webhook delivery so getUpdates can be used."""
        await self._bot.delete_webhook()

    async def set_webhook(self, url: str) -> None:
        """Point Telegram at our webhook URL, with our secret token."""
        await self._bot.set_webhook(url=url, secret_token=self.webhook_secret or None)


def _whole_number(name: str, value: str | None) -> int | None:
    """A reply's id parameter as the Bot API takes it (an integer); a value that is not one
    can never be sent, so it fails the delivery for good instead of being retried."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise DeliveryError(
            f"the reply cannot be sent: its {name} {value!r} is not a whole number, and"
            " Telegram takes only numbers there",
            permanent=True,
        ) from None


def delivery_error(exc: TelegramError) -> DeliveryError:
    """Telegram's refusal (or PTB's network failure) as a DeliveryError."""
    if not isinstance(exc, TelegramRefusal):  # TimedOut, NetworkError: worth a retry
        return DeliveryError(str(exc), permanent=False)
    retry_after = exc.parameters.get("retry_after")
    if exc.error_code == 429 or retry_after is not None:
        seconds = float(retry_after) if isinstance(retry_after, int | float) else None
        return DeliveryError(exc.description, permanent=False, retry_after=seconds)
    # 400 (chat not found, bad text), 401/404 (bad token), 403 (blocked, kicked) won't heal.
    permanent = exc.error_code in (400, 401, 403, 404)
    return DeliveryError(exc.description, permanent=permanent)

"""The parts of Telegram Bot API updates the adapter reads, as typed models.

Only the fields `channels.telegram` reads are declared (Bot API types Update, Message, Chat,
User, MessageEntity); the rest of an update is kept, unread, in the stored turn.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from channels.payload import ProviderModel

# Bot API ids "fit in a signed 64-bit integer"; a larger one is not Telegram's.
TelegramId = Annotated[int, Field(ge=-(2**63), lt=2**63)]
Offset = Annotated[int, Field(ge=0, lt=2**31)]  # UTF-16 units into a message of 4096 characters

# Keys of a Message that make it a service message, and its non-text contents (Bot API "Message").
# fmt: off
SERVICE_KEYS = (
    "new_chat_members", "left_chat_member", "new_chat_title", "new_chat_photo",
    "delete_chat_photo", "group_chat_created", "supergroup_chat_created",
    "channel_chat_created", "message_auto_delete_timer_changed", "migrate_to_chat_id",
    "migrate_from_chat_id", "pinned_message", "successful_payment", "refunded_payment",
    "users_shared", "chat_shared", "connected_website", "write_access_allowed",
    "proximity_alert_triggered", "boost_added", "chat_background_set", "forum_topic_created",
    "forum_topic_edited", "forum_topic_closed", "forum_topic_reopened",
    "general_forum_topic_hidden", "general_forum_topic_unhidden", "giveaway_created",
    "giveaway_completed", "video_chat_scheduled", "video_chat_started", "video_chat_ended",
    "video_chat_participants_invited", "web_app_data",
)
CONTENT_KEYS = (
    "sticker", "photo", "video", "animation", "voice", "video_note", "audio", "document",
    "contact", "location", "venue", "poll", "dice", "game", "story", "invoice", "paid_media",
)
# fmt: on


class TelegramUser(ProviderModel):
    """A User (`from`), or a Chat sending on its own behalf (`sender_chat`)."""

    id: TelegramId | None = None
    is_bot: bool = False
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None


class TelegramChat(ProviderModel):
    id: TelegramId | None = None
    type: str = ""


class TelegramEntity(ProviderModel):
    """A MessageEntity: a mention, a command, a link... in `text` or `caption`."""

    type: str
    offset: Offset
    length: Offset
    user: TelegramUser | None = None


class TelegramMessage(ProviderModel):
    """A Message. Its other keys are kept (`model_extra`): service messages and non-text
    contents are told apart by which key is present."""

    model_config = ConfigDict(extra="allow")

    message_id: TelegramId | None = None
    chat: TelegramChat = TelegramChat()
    sender: TelegramUser | None = Field(None, alias="from")
    sender_chat: TelegramUser | None = None
    text: str | None = None
    caption: str | None = None
    entities: list[TelegramEntity] = Field(default_factory=list)
    caption_entities: list[TelegramEntity] = Field(default_factory=list)
    is_topic_message: bool = False
    message_thread_id: TelegramId | None = None
    reply_to_message: TelegramMessage | None = None

    def has(self, key: str) -> bool:
        """Whether the message carries `key` (a service or content key we do not model)."""
        return key in (self.model_extra or {})

    def first_key(self, keys: tuple[str, ...]) -> str | None:
        """The first of `keys` the message carries (which service message, which content)."""
        return next((key for key in keys if self.has(key)), None)


class TelegramUpdatePayload(ProviderModel):
    """The object of any other update (callback_query, my_chat_member, inline_query, ...):
    who sent it and, for a callback query, the message its button was on."""

    sender: TelegramUser | None = Field(None, alias="from")
    message: TelegramMessage | None = None


class TelegramUpdate(ProviderModel):
    update_id: TelegramId

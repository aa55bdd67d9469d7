"""Telegram's side of interactions: the prompt with an inline keyboard (or a ForceReply for an
`input`), a button's `callback_query` answered with a toast (`answerCallbackQuery`), and the
keyboard removed (`editMessageReplyMarkup`) once the interaction is decided, the decision shown
in the prompt's text (`editMessageText`).

`callback_data` is `ix|<interaction id>|<option number>`: at most ~32 bytes, within Telegram's
64-byte limit whatever the options' ids are.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import Field
from telegram import ForceReply, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import TelegramError

from channels.interactions import (
    AnswerAttempt,
    Prompt,
    PromptMessage,
    callback_data,
    parse_callback,
    prompt_only,
)
from channels.messages import OutboundMessage
from channels.payload import ProviderModel, parse
from channels.telegram.client import TelegramAccount, _whole_number, delivery_error
from channels.telegram.payload import TelegramUser

log = logging.getLogger(__name__)
TOAST_LIMIT = 200  # answerCallbackQuery's text: 0-200 characters


class CallbackQuery(ProviderModel):
    """The fields of a CallbackQuery a click needs."""

    id: str = Field(max_length=255)
    sender: TelegramUser = Field(alias="from")
    data: str = Field(default="", max_length=64)


def our_click(update: dict[str, Any]) -> bool:
    """Whether the update is a click on one of our interaction buttons."""
    query = update.get("callback_query")
    return isinstance(query, dict) and isinstance(query.get("data"), str) \
        and parse_callback(query["data"]) is not None


def attempt_of(update: dict[str, Any], account: str) -> tuple[str, AnswerAttempt]:
    """(the callback query's id, the answer attempt it carries); RejectedRequest if malformed."""
    query = parse(CallbackQuery, update["callback_query"], "callback_query")
    parsed = parse_callback(query.data)
    assert parsed is not None
    interaction_id, choice = parsed
    user = query.sender
    name = user.username or " ".join(n for n in (user.first_name, user.last_name) if n)
    return query.id, AnswerAttempt(interaction_id=interaction_id, provider="telegram",
                                   account=account, by_id=str(user.id), by_name=name,
                                   choice=choice, key=query.id)


async def toast(account: TelegramAccount, query_id: str, text: str) -> None:
    """answerCallbackQuery: the short notice the clicking person sees (and the button's
    spinner stops)."""
    try:
        await account.bot.answer_callback_query(query_id, text=text[:TOAST_LIMIT])
    except TelegramError as error:  # too late (older than 15 s after a restart): no toast
        log.warning("telegram %s: answerCallbackQuery failed: %s", account.name, error)


async def send_prompt(account: TelegramAccount, out: OutboundMessage, prompt: Prompt,
                      replied: bool = False) -> str:
    """The agent's reply (if any) as usual, then the prompt with its buttons; the prompt's
    message id, the message to settle later. When the prompt fails after the reply went out
    (or `replied`: a live message finished), the retry sends the prompt alone."""
    if prompt.reply.strip():
        await account.deliver(OutboundMessage(
            provider=out.provider, account=out.account, conversation=out.conversation,
            text=prompt.reply, thread=out.thread, reply_to=out.reply_to))
        replied = True
    markup: InlineKeyboardMarkup | ForceReply
    if prompt.options:
        markup = InlineKeyboardMarkup([[InlineKeyboardButton(
            option.label[:64], callback_data=callback_data(prompt.id, n))]
            for n, option in enumerate(prompt.options, 1)])
        text = prompt.prompt
    else:  # an input: the person's next message (a reply to this one) is the answer
        markup = ForceReply(selective=True, input_field_placeholder="Your answer")
        text = prompt.prompt
    kwargs: dict[str, Any] = {}
    thread = _whole_number("message_thread_id", out.thread)
    if thread is not None:
        kwargs["message_thread_id"] = thread
    try:
        sent = await account.bot.send_message(chat_id=out.conversation, text=text[:4096],
                                              reply_markup=markup, **kwargs)
    except TelegramError as error:
        failed = delivery_error(error)
        raise (prompt_only(failed, out.extra) if replied else failed) from error
    return str(sent.message_id)


async def settle(account: TelegramAccount, message: PromptMessage, text: str) -> None:
    """Remove the keyboard, then show the decision in the prompt's text."""
    message_id = _whole_number("message_id", message.message_id)
    await account.bot.edit_message_reply_markup(chat_id=message.conversation,
                                                message_id=message_id, reply_markup=None)
    await account.bot.edit_message_text(text[:4096], chat_id=message.conversation,
                                        message_id=message_id)


__all__ = ["attempt_of", "our_click", "send_prompt", "settle", "toast"]

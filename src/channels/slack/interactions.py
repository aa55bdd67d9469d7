"""Slack's side of interactions: the prompt as a Block Kit message with one button per option
(a "reply in this thread" hint for an `input`), `block_actions` requests from the
Interactivity request URL (`POST /slack/{account}/interactions`, form-encoded `payload=`,
signed like events), a refused click told to the person alone (`chat.postEphemeral`), and
the buttons replaced by the decision once it is made (`chat.update`).

Slack wants the request acknowledged within 3 seconds: the click is decided in one short
transaction; the ephemeral notice goes out after the acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from channels.errors import DeliveryError, RejectedRequest
from channels.interactions import (
    AnswerAttempt,
    Prompt,
    PromptMessage,
    callback_data,
    parse_callback,
    prompt_only,
)
from channels.messages import OutboundMessage
from channels.slack.client import SlackAccount, _words, delivery_error

log = logging.getLogger(__name__)
STYLES = {"approve": "primary", "reject": "danger"}


def blocks(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt and its buttons (button values are `ix|<interaction>|<option number>`)."""
    section = {"type": "section", "text": {"type": "mrkdwn", "text": prompt.prompt[:3000]}}
    if not prompt.options:
        return [section, {"type": "context", "elements": [
            {"type": "mrkdwn", "text": "Reply in this thread with your answer."}]}]
    buttons = []
    for n, option in enumerate(prompt.options, 1):
        button: dict[str, Any] = {
            "type": "button", "text": {"type": "plain_text", "text": option.label[:75]},
            "action_id": callback_data(prompt.id, n), "value": callback_data(prompt.id, n)}
        if option.id in STYLES:
            button["style"] = STYLES[option.id]
        buttons.append(button)
    return [section, {"type": "actions", "block_id": f"ix|{prompt.id}", "elements": buttons}]


async def send_prompt(account: SlackAccount, out: OutboundMessage, prompt: Prompt,
                      replied: bool = False) -> str:
    """The agent's reply (if any) as usual, then the prompt with its buttons; the prompt's
    `ts`, the message to update once decided. When the prompt fails after the reply went out
    (or `replied`: a live message finished), the retry sends the prompt alone."""
    if prompt.reply.strip():
        await account.deliver(OutboundMessage(
            provider=out.provider, account=out.account, conversation=out.conversation,
            text=prompt.reply, thread=out.thread))
        replied = True
    try:
        response = await account.client.chat_postMessage(
            channel=out.conversation, thread_ts=out.thread, blocks=blocks(prompt),
            text=prompt.numbered())  # the notification's text, and what old clients show
    except SlackApiError as error:
        failed = delivery_error(error)
    except (aiohttp.ClientError, TimeoutError) as error:
        failed = DeliveryError(f"Slack unreachable: {_words(error)}", permanent=False)
    else:
        return str(response.get("ts") or "")
    raise (prompt_only(failed, out.extra) if replied else failed) from None


def attempts(payload: dict[str, Any], account: str) -> list[AnswerAttempt]:
    """The clicks on our buttons in a `block_actions` payload; RejectedRequest if mistyped."""
    user = payload.get("user")
    actions = payload.get("actions")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) \
            or not isinstance(actions, list):
        raise RejectedRequest("malformed", "block_actions without a user or actions")
    name = str(user.get("username") or user.get("name") or user["id"])[:255]
    found = []
    for action in actions:
        value = action.get("value") if isinstance(action, dict) else None
        parsed = parse_callback(value) if isinstance(value, str) and len(value) <= 255 \
            else None
        if parsed is not None:
            found.append(AnswerAttempt(
                interaction_id=parsed[0], provider="slack", account=account,
                by_id=user["id"][:255], by_name=name, choice=parsed[1],
                key=str(action.get("action_ts") or "")[:64]))
    return found


def tell(account: SlackAccount, payload: dict[str, Any], text: str,
         pending: set[asyncio.Task[None]]) -> None:
    """An ephemeral message to the person who clicked, after the acknowledgement."""
    channel = (payload.get("channel") or {}).get("id") or \
        (payload.get("container") or {}).get("channel_id")
    user = (payload.get("user") or {}).get("id")
    if not isinstance(channel, str) or not isinstance(user, str):
        return
    thread = (payload.get("container") or {}).get("thread_ts")

    async def post() -> None:
        try:
            await account.client.chat_postEphemeral(channel=channel, user=user, text=text,
                                                    thread_ts=thread)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("slack %s: chat.postEphemeral failed: %s", account.name, _words(error))

    task = asyncio.create_task(post())
    pending.add(task)
    task.add_done_callback(pending.discard)


async def settle(account: SlackAccount, message: PromptMessage, text: str) -> None:
    """chat.update: the prompt stays, its buttons give way to the decision."""
    prompt_text, _, decision = text.rpartition("\n\n")
    await account.client.chat_update(
        channel=message.conversation, ts=message.message_id, text=text, blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": prompt_text[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": decision[:3000]}]}])


__all__ = ["attempts", "blocks", "send_prompt", "settle", "tell"]

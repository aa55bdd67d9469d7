"""Slack's live replies: the thread status (or an acknowledgement reaction) while the agent
works, and an answer streamed with chat.startStream / appendStream / stopStream, or, where
Slack refuses streams, posted and then updated with chat.update.

https://docs.slack.dev/reference/methods/assistant.threads.setStatus (a 2-minute timeout;
cleared by the app's reply), chat.startStream (`recipient_user_id` / `recipient_team_id` are
required outside DMs; `markdown_text` holds at most 12,000 characters).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from channels.errors import DeliveryError
from channels.live import LIVE_KEY, Pace, Rate, digest, split_text
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage

STREAM_LIMIT = 12_000  # markdown_text of one stream call; the rest goes in new messages
PACE = Pace(conversation=Rate(1, 1), label="Slack's", conversation_word="per-channel")
# Where Slack says the app may not do this here: the fallback is taken instead of a retry.
REFUSED = frozenset({"not_allowed", "missing_scope", "not_allowed_token_type", "unknown_method",
                     "method_deprecated", "channel_type_not_supported", "feature_not_enabled",
                     "invalid_thread_ts", "not_in_channel", "access_denied",
                     "team_not_allowed", "invalid_arguments"})
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
NOT_STREAMING = "message_not_in_streaming_state"


def code_of(error: SlackApiError) -> str:
    data = getattr(error.response, "data", None)
    return str(data.get("error") or "") if isinstance(data, dict) else ""


async def call(method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """One Web API call; Slack's refusal stays a SlackApiError, the network is a DeliveryError."""
    try:
        return await method(**kwargs)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DeliveryError(f"Slack unreachable: {str(error) or type(error).__name__}",
                            permanent=False) from None


class SlackWorking:
    """`assistant.threads.setStatus` on the reply thread; where Slack refuses it, the
    `ack_reaction` on the person's message, removed after the reply."""

    def __init__(self, client: AsyncWebClient, message: InboundMessage, status: str,
                 reaction: str | None, errors: Callable[[SlackApiError], DeliveryError]) -> None:
        self.client = client
        self.channel = message.conversation
        self.thread = message.reply_thread or message.message_id
        self.ts = message.message_id
        self.status = status
        self.reaction = reaction
        self.errors = errors
        self.how: str | None = None
        self.refresh: float | None = 90.0  # the status lasts 2 minutes unless set again

    async def show(self) -> str:
        if self.how != "reaction":
            try:
                await call(self.client.assistant_threads_setStatus, channel_id=self.channel,
                           thread_ts=self.thread, status=self.status)
                self.how = "status"
                return "status"
            except SlackApiError as error:
                if code_of(error) not in REFUSED or not self.reaction or not self.ts:
                    raise self.errors(error) from None
        try:
            await call(self.client.reactions_add, channel=self.channel, name=self.reaction,
                       timestamp=self.ts)
        except SlackApiError as error:
            if code_of(error) != "already_reacted":
                raise self.errors(error) from None
        self.how, self.refresh = "reaction", None
        return "reaction"

    async def clear(self, replied: bool) -> None:
        try:
            if self.how == "reaction":
                await call(self.client.reactions_remove, channel=self.channel,
                           name=self.reaction, timestamp=self.ts)
            elif self.how == "status" and not replied:  # a reply clears the status itself
                await call(self.client.assistant_threads_setStatus, channel_id=self.channel,
                           thread_ts=self.thread, status="")
        except SlackApiError as error:
            raise self.errors(error) from None


class SlackLiveReply:
    """A streamed answer in the reply thread (`stream`), or a posted message kept up to date
    with chat.update (`edit`) where Slack refuses streams."""

    limit = STREAM_LIMIT

    def __init__(self, client: AsyncWebClient, message: InboundMessage, out: OutboundMessage,
                 errors: Callable[[SlackApiError], DeliveryError],
                 resume: dict[str, Any] | None, own: Collection[str | None] = ()) -> None:
        self.client = client
        self.own = {i for i in own if i}  # the bot's user and bot ids
        self.channel = out.conversation
        self.thread = out.thread or message.message_id
        self.recipient = {"recipient_user_id": message.sender,
                          "recipient_team_id": message.extra.get("team")}
        self.errors = errors
        self.mode = "stream"
        self.message_id: str | None = None
        self.refused: str | None = None
        self.sent = ""
        self.known = True  # whether `sent` is what the message shows
        if resume is not None:  # a dead process's message: what it shows is not known
            self.mode, self.message_id = str(resume.get("mode")), str(resume.get("id"))
            self.known = False

    async def start(self, text: str) -> None:
        begun = time.time()
        try:
            answer = await self._open(text)
        except DeliveryError:  # no answer: the stream (or message) may exist all the same
            found = await self._own_message_since(begun)
            if found is None:
                raise
            answer = {"ts": found}
        self.message_id = str(answer.get("ts") or "")
        self.sent = text

    async def _open(self, text: str) -> Any:
        """chat.startStream; where Slack refuses streams, chat.postMessage (mode `edit`)."""
        try:
            return await call(self.client.chat_startStream, channel=self.channel,
                              thread_ts=self.thread, markdown_text=text,
                              **{k: v for k, v in self.recipient.items() if v})
        except SlackApiError as error:
            if code_of(error) not in REFUSED:
                raise self.errors(error) from None
            self.refused = code_of(error)
        self.mode = "edit"
        try:
            return await call(self.client.chat_postMessage, channel=self.channel, text=text,
                              thread_ts=self.thread)
        except SlackApiError as error:
            raise self.errors(error) from None

    async def _own_message_since(self, begun: float) -> str | None:
        """The bot's newest message in the thread since `begun` (a stream whose start went
        unanswered), so it is finished instead of left open; None when there is none."""
        try:
            answer = await call(self.client.conversations_replies, channel=self.channel,
                                ts=self.thread, oldest=f"{begun - 1:.6f}", inclusive=True)
        except (SlackApiError, DeliveryError):
            return None
        mine = [m for m in answer.get("messages") or [] if isinstance(m, dict)
                and m.get("ts") != self.thread
                and ({m.get("user"), m.get("bot_id")} & self.own)]
        return str(max(mine, key=lambda m: float(m["ts"]))["ts"]) if mine else None

    async def update(self, text: str) -> None:
        try:
            if not self.known and self.mode == "stream":  # stop it, then edit as a message
                await self.abandon()
                self.mode = "edit"
            if self.mode == "stream":
                if not text.startswith(self.sent) or len(text) == len(self.sent):
                    return  # a stream only grows; the final delivery sets what differs
                await call(self.client.chat_appendStream, channel=self.channel,
                           ts=self.message_id, markdown_text=text[len(self.sent):])
            else:
                await call(self.client.chat_update, channel=self.channel,
                           ts=self.message_id, text=text)
        except SlackApiError as error:
            raise self.errors(error) from None
        except DeliveryError:  # unanswered: the append may have taken effect or not
            self.known = False
            raise
        self.sent, self.known = text, True

    def state(self) -> dict[str, Any]:
        return {"mode": self.mode, "id": self.message_id, "shown": len(self.sent),
                "digest": digest(self.sent) if self.known else None}

    async def abandon(self) -> None:
        if self.mode == "stream" and self.message_id:
            try:
                await call(self.client.chat_stopStream, channel=self.channel,
                           ts=self.message_id)
            except SlackApiError as error:
                if code_of(error) != NOT_STREAMING:
                    raise self.errors(error) from None


async def finish(client: AsyncWebClient, out: OutboundMessage,
                 post: Callable[[OutboundMessage], Awaitable[str]],
                 errors: Callable[[SlackApiError], DeliveryError]) -> DeliveryReceipt:
    """The final delivery of a reply shown live: its message is finished with the final text
    (the stream stopped), the rest of a long reply follows in new messages; when the message
    is gone, one fresh complete message instead. Safe to repeat (a retry, another process)."""
    state = out.extra[LIVE_KEY]
    ts, shown = str(state.get("id")), int(state.get("shown") or 0)
    first, *rest = split_text(out.text, STREAM_LIMIT)
    try:
        if state.get("mode") == "stream":
            how = await _stop(client, out.conversation, ts, first, shown, state.get("digest"))
        else:
            await call(client.chat_update, channel=out.conversation, ts=ts, text=first)
            how = "updated the message shown so far to the final text"
    except SlackApiError as error:
        code = code_of(error)
        if code not in GONE:
            raise errors(error) from None
        fresh = await post(out)
        return DeliveryReceipt(fresh, {LIVE_KEY: {"finished": False, "error": code,
                                                  "how": "one fresh complete message"}})
    for piece in rest:  # a long reply continues in new messages, at paragraph breaks
        await post(OutboundMessage(out.provider, out.account, out.conversation, piece,
                                   thread=out.thread))
    return DeliveryReceipt(ts, {LIVE_KEY: {"finished": True, "how": how,
                                           **({"continued_in": len(rest)} if rest else {})}})


async def _stop(client: AsyncWebClient, channel: str, ts: str, first: str, shown: int,
                shown_digest: Any) -> str:
    """Stop the stream with the rest of the text; when what was shown is not a start of the
    final text, or the stream is already stopped (a retry), set the final text."""
    grows = len(first) >= shown and digest(first[:shown]) == shown_digest
    try:
        rest = first[shown:] if grows else ""
        await call(client.chat_stopStream, channel=channel, ts=ts,
                   **({"markdown_text": rest} if rest else {}))
        if grows:
            return "stopped the stream with the rest of the reply"
    except SlackApiError as error:
        if code_of(error) != NOT_STREAMING:
            raise
    await call(client.chat_update, channel=channel, ts=ts, text=first)
    return "stopped the stream and set the final text"

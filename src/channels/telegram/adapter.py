"""One Telegram bot running: getMe at start, webhook updates or long polling, replies.

The wire (secret check, update reading, Bot API calls) is `channels.telegram.client`; this
module runs it for one account: the polling loop keeps its offset through `Services`, so a
restart neither replays nor skips updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from channels.adapter import Answer, Services, Turns, WebhookResult
from channels.errors import RejectedRequest, StartFailed
from channels.files import OutboundFile
from channels.interactions import Prompt, PromptMessage
from channels.live import LIVE_KEY
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from channels.outreach import Outreach, Recipient, RecipientRefused
from channels.telegram import PROVIDER, interactions
from channels.telegram import live as telegram_live
from channels.telegram.client import TelegramAccount
from channels.telegram.settings import TelegramSettings

log = logging.getLogger(__name__)
CURSOR = "telegram_offset"  # the next getUpdates offset, kept by the application
RETRY_POLL = 2.0  # seconds before asking again after a failed getUpdates


def client_for(name: str, settings: TelegramSettings) -> TelegramAccount:
    """The Bot API client of an account; ValueError when its settings cannot work."""
    return TelegramAccount(name, settings.token, webhook_secret=settings.webhook_secret,
                           base_url=settings.base_url, mode=settings.mode)


class TelegramAdapter:
    """A Telegram bot as the application sees it (`channels.adapter`)."""

    capabilities = PROVIDER.capabilities

    def __init__(self, name: str, settings: TelegramSettings, services: Services) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self._client: TelegramAccount | None = None
        self._polling: asyncio.Task[None] | None = None
        self.pace = telegram_live.PACE.configured(settings.pacing)

    @property
    def client(self) -> TelegramAccount:
        if self._client is None:
            raise RuntimeError(f"telegram account {self.name} is not started")
        return self._client

    async def start(self) -> None:
        """Learn who the bot is (getMe); then poll, in `mode: polling`."""
        try:
            client = client_for(self.name, self.settings)
        except ValueError as error:
            raise StartFailed(str(error)) from None
        try:
            await client.start()
        except Exception as error:  # a bad token or an unreachable API: this account only
            await _close_quietly(client)
            raise StartFailed(f"getMe failed: {error}") from None
        self._client = client
        if self.settings.mode == "polling":
            self._polling = asyncio.create_task(self._poll(self.settings.poll_timeout))

    async def stop(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling
            self._polling = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def webhook(self, action: str, headers: Mapping[str, str],
                      body: bytes) -> WebhookResult:
        """The secret token header first, then the update; RejectedRequest for the rest. A
        click on an interaction's button is answered, not recorded as a turn."""
        if action != "webhook":
            raise RejectedRequest("malformed", f"Telegram has no webhook action {action!r}")
        client = self.client
        client.verify(headers)
        update = client.parse_body(body)
        if interactions.our_click(update):
            await self._clicked(update)
            return Answer({"ok": True})
        return Turns((client.to_inbound(update),))

    async def _clicked(self, update: dict[str, Any]) -> None:
        """A button of an interaction: the application decides, the person sees a toast."""
        query_id, attempt = interactions.attempt_of(update, self.name)
        verdict = await self.services.answer_interaction(attempt)
        await interactions.toast(self.client, query_id, verdict.message)

    async def settle(self, message: PromptMessage, text: str) -> None:
        await interactions.settle(self.client, message, text)

    async def _poll(self, timeout: int) -> None:
        """Long-poll getUpdates; each update is recorded before the offset moves past it."""
        client = self.client
        while True:
            try:
                await client.delete_webhook()  # getUpdates is refused while a webhook is set
                break
            except Exception as error:  # unreachable now: asked again, the account shows why
                self._failed("deleteWebhook", error)
                await asyncio.sleep(RETRY_POLL)
        while True:
            stored = await self.services.get_cursor(self.name, CURSOR)
            try:
                updates = await client.get_updates(int(stored) if stored else None, timeout)
            except Exception as error:
                self._failed("getUpdates", error)
                await asyncio.sleep(RETRY_POLL)
                continue
            self.services.note_error(self.name, None)
            for update in updates:
                try:
                    if interactions.our_click(update):
                        await self._clicked(update)
                        message = None
                    else:
                        message = client.to_inbound(update)
                except RejectedRequest as error:  # not one Telegram sends; asking again won't help
                    log.warning("telegram %s: skipped an update: %s", self.name, error)
                else:
                    if message is not None:
                        await self.services.record(message)
                if isinstance(update_id := update.get("update_id"), int):
                    await self.services.set_cursor(self.name, CURSOR, str(update_id + 1))

    def _failed(self, call: str, error: Exception) -> None:
        self.services.note_error(self.name, f"{call} failed: {error}")
        log.warning("telegram %s: %s failed: %s", self.name, call, error)

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        """In the message's topic; in a group, quoting the message it answers."""
        return OutboundMessage(provider=message.provider, account=message.account,
                               conversation=message.conversation, text=text,
                               thread=message.thread,
                               reply_to=message.message_id if message.kind != "dm" else None)

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt:
        prompt = Prompt.from_extra(out.extra)
        if isinstance(out.extra.get(LIVE_KEY), dict):  # finish the message shown live
            finished = await telegram_live.finish(self.client, out)
            if prompt is None:
                return finished
            # the reply is the message just finished; then the prompt with its buttons
            sent = await interactions.send_prompt(self.client, out, replace(prompt, reply=""),
                                                  replied=True)
            return DeliveryReceipt(sent, finished.detail)
        if prompt is not None:  # an interaction: its buttons (channels.telegram.interactions)
            return DeliveryReceipt(await interactions.send_prompt(self.client, out, prompt))
        return DeliveryReceipt(await self.client.deliver(out))

    async def outreach(self, agent: str, to: Recipient, text: str) -> Outreach:
        """A message into a chat (a topic of it): a user's private chat has the user's id,
        groups have negative ids. The person answers in that chat (topic)."""
        chat = to.user or to.conversation or ""
        if to.email or not chat.lstrip("-").isdigit():
            raise RecipientRefused("Telegram takes to.conversation (a chat id such as "
                                   "-1001234567890, or a user's id for their private chat)")
        private = not chat.startswith("-")
        out = OutboundMessage(provider="telegram", account=self.name, conversation=chat,
                              text=text, thread=to.thread)
        reply = InboundMessage(provider="telegram", account=self.name, event_id="",
                               conversation=chat, kind="dm" if private else "group",
                               sender=chat if private else "", text="", thread=to.thread,
                               mentioned=True)
        return Outreach(out, reply)

    # --- files (channels.adapter.FileAdapter) ----------------------------------------------

    files_in_reply = False

    def open_file(self, ref: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """getFile, then the download (streamed)."""
        return self.client.files.open(ref)

    async def deliver_file(self, out: OutboundMessage, file: OutboundFile) -> DeliveryReceipt:
        """sendPhoto or sendDocument, in the reply's topic."""
        return DeliveryReceipt(await self.client.files.send(out, file))

    # --- live replies (channels.live) ------------------------------------------------------

    def is_group(self, conversation: str) -> bool:
        return conversation.startswith("-")  # groups and supergroups have negative chat ids

    def working(self, message: InboundMessage) -> telegram_live.TelegramWorking | None:
        if not self.settings.typing or self._client is None:
            return None
        return telegram_live.TelegramWorking(self.client, message,
                                             self.settings.typing_interval.total_seconds())

    def live(self, message: InboundMessage, out: OutboundMessage,
             resume: dict[str, Any] | None) -> telegram_live.TelegramLiveReply | None:
        if self._client is None or message.kind == "channel":
            return None
        if not self.settings.streaming and resume is None:
            return None
        return telegram_live.TelegramLiveReply(self.client, message, out, resume)


async def _close_quietly(client: TelegramAccount) -> None:
    """Close the HTTP clients of a bot that failed to start; its start error is the news."""
    try:
        await client.close()
    except Exception:
        log.debug("closing the clients of a bot that did not start failed", exc_info=True)

"""One Slack account running: Events API and slash-command webhooks, Socket Mode, replies.

The wire (signature, payload models, Web API calls) is `channels.slack.client`; this module
decides what a request becomes: a challenge answered at once, turns to record, or a chat
command for the application to run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from channels.adapter import Answer, Services, Turns, WebhookResult
from channels.errors import RejectedRequest
from channels.files import OutboundFile
from channels.interactions import Prompt, PromptMessage
from channels.live import LIVE_KEY
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from channels.outreach import Outreach, Recipient, RecipientRefused
from channels.slack import PROVIDER, interactions
from channels.slack import live as slack_live
from channels.slack.client import SlackAccount, delivery_error
from channels.slack.settings import SlackSettings

log = logging.getLogger(__name__)


class SlackAdapter:
    """A Slack app in a workspace as the application sees it (`channels.adapter`)."""

    capabilities = PROVIDER.capabilities

    def __init__(self, name: str, settings: SlackSettings, services: Services) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self.client = SlackAccount(name, bot_token=settings.bot_token,
                                   signing_secret=settings.signing_secret,
                                   api_url=settings.api_url, app_token=settings.app_token,
                                   allow_bots=settings.allow_bots)
        self.pace = slack_live.PACE.configured(settings.pacing)
        self._pending: set[asyncio.Task[None]] = set()  # ephemeral notices on their way

    async def start(self) -> None:
        """auth.test (retried on the first event when Slack is unreachable now), then Socket
        Mode when configured; a bad app token leaves the account failing, not the process."""
        await self.client.start()
        if self.settings.mode != "socket":
            return
        try:
            await self.client.start_socket_mode(self._socket_event, self._socket_interaction)
        except Exception as error:  # the other accounts keep running; operators see why
            self.services.note_error(self.name, f"socket mode failed to connect: {error}")
            log.error("slack account %s: socket mode failed: %s", self.name, error)

    async def stop(self) -> None:
        await self.client.close()

    async def webhook(self, action: str, headers: Mapping[str, str],
                      body: bytes) -> WebhookResult:
        if action == "events":
            return await self._events(headers, body)
        if action == "commands":
            return await self._slash_command(headers, body)
        if action == "interactions":
            return await self._interactivity(headers, body)
        raise RejectedRequest("malformed", f"Slack has no webhook action {action!r}")

    async def _events(self, headers: Mapping[str, str], body: bytes) -> WebhookResult:
        """Events API: verified on the raw bytes, then read; the bot's identity is learned on
        the first event if auth.test failed at start."""
        client = self.client
        client.verify(headers, body)
        payload = client.parse_body(body, headers.get("content-type", ""))
        envelope = client.envelope(payload)
        if envelope.type == "url_verification":
            return Answer({"challenge": envelope.challenge})
        if envelope.type != "event_callback":
            return Answer({"ok": True, "ignored": f"payload type {envelope.type}"})
        if client.bot_user_id is None:
            await client.start()
        message = client.to_inbound(payload, envelope)
        if "x-slack-retry-num" not in headers:
            return Turns((message,))
        # Slack retries an event it thinks we missed; kept on the turn (it is deduplicated)
        return Turns((message,), {"retry_num": headers["x-slack-retry-num"],
                                  "retry_reason": headers.get("x-slack-retry-reason", "")})

    async def _socket_event(self, payload: dict[str, Any], extra: dict[str, Any]) -> None:
        """An Events API payload over Socket Mode, acknowledged once this returns."""
        if payload.get("type") != "event_callback":
            return
        if self.client.bot_user_id is None:
            await self.client.start()
        await self.services.record(self.client.to_inbound(payload), extra)

    async def _socket_interaction(self, payload: dict[str, Any], extra: dict[str, Any]) -> None:
        """An interactivity payload over Socket Mode: decided as the request URL's are."""
        await self._clicks(payload)

    async def _slash_command(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """`/agent new|end|pause|resume|agents|transfer NAME`, answered to the person alone
        (ephemeral)."""
        self.client.verify(headers, body)
        form = self.client.parse_body(body, "application/x-www-form-urlencoded")
        return Answer({"response_type": "ephemeral", "text": await self._run_command(form)})

    async def _run_command(self, form: dict[str, Any]) -> str:
        expected = self.settings.slash_command
        command = str(form.get("command", ""))
        if not expected or command != expected:
            return f"{command} is not a command this app knows."
        action, *args = str(form.get("text", "")).split(maxsplit=1) or [""]
        action = action.lower()  # the argument (an agent's name) keeps its case
        channel, user = str(form.get("channel_id", "")), str(form.get("user_id", ""))
        probe = InboundMessage(provider="slack", account=self.name, event_id="slash",
                               conversation=channel,
                               kind="dm" if channel.startswith("D") else "channel",
                               sender=user, text="", mentioned=True)
        return await self.services.command(probe, action, "".join(args),
                                           invoked_as=f"{expected} ")

    async def _interactivity(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """`block_actions` from the Interactivity request URL: a click on an interaction's
        button, decided at once; a refused one is told to the person alone, after the
        acknowledgement (Slack wants it within 3 s)."""
        self.client.verify(headers, body)
        payload = self.client.parse_body(body, "application/x-www-form-urlencoded")
        if payload.get("type") != "block_actions":
            return Answer({"ok": True, "ignored": f"payload type {payload.get('type')}"})
        await self._clicks(payload)
        return Answer({})

    async def _clicks(self, payload: dict[str, Any]) -> None:
        """The clicks of a `block_actions` payload (request URL or Socket Mode), decided."""
        if payload.get("type") != "block_actions":
            return
        for attempt in interactions.attempts(payload, self.name):
            verdict = await self.services.answer_interaction(attempt)
            if not verdict.accepted and not verdict.repeated:
                interactions.tell(self.client, payload, verdict.message, self._pending)

    async def settle(self, message: PromptMessage, text: str) -> None:
        await interactions.settle(self.client, message, text)

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        """In the message's thread; a message in a channel opens one under itself."""
        return OutboundMessage(provider=message.provider, account=message.account,
                               conversation=message.conversation, text=text,
                               thread=message.reply_thread)

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt:
        prompt = Prompt.from_extra(out.extra)
        if isinstance(out.extra.get(LIVE_KEY), dict):  # finish the message shown live
            finished = await slack_live.finish(self.client.live_client, out, self.client.deliver,
                                               delivery_error)
            if prompt is None:
                return finished
            # the reply is the message just finished; then the prompt with its buttons
            ts = await interactions.send_prompt(self.client, out, replace(prompt, reply=""),
                                                replied=True)
            return DeliveryReceipt(ts, finished.detail)
        if prompt is not None:  # an interaction: Block Kit buttons (channels.slack.interactions)
            return DeliveryReceipt(await interactions.send_prompt(self.client, out, prompt))
        return DeliveryReceipt(await self.client.deliver(out))

    async def outreach(self, agent: str, to: Recipient, text: str) -> Outreach:
        """A DM to a user (opened with conversations.open), or a message into a conversation
        (a thread of it). The person answers in the DM, or in the message's thread."""
        if to.email:
            raise RecipientRefused("Slack takes to.user (U…) or to.conversation (C…, D…)")
        if to.user:
            conversation, sender, thread = await self.client.open_dm(to.user), to.user, None
        else:
            conversation, sender, thread = str(to.conversation), "", to.thread
        kind = "dm" if conversation.startswith("D") else "channel"
        out = OutboundMessage(provider="slack", account=self.name, conversation=conversation,
                              text=text, thread=thread)
        # a top-level channel message is answered in a thread under it (starts_thread)
        reply = InboundMessage(provider="slack", account=self.name, event_id="",
                               conversation=conversation, kind=kind, sender=sender, text="",
                               thread=thread, mentioned=True,
                               starts_thread=kind != "dm" and thread is None)
        return Outreach(out, reply)

    # --- files (channels.adapter.FileAdapter) ----------------------------------------------

    files_in_reply = False

    def open_file(self, ref: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """url_private with the bot token (files:read), after the acknowledgement."""
        return self.client.files.open(ref)

    async def deliver_file(self, out: OutboundMessage, file: OutboundFile) -> DeliveryReceipt:
        """Uploaded into the reply's thread (files:write)."""
        return DeliveryReceipt(await self.client.files.upload(out, file))

    # --- live replies (channels.live) ------------------------------------------------------

    def is_group(self, conversation: str) -> bool:
        return False  # Slack paces per channel and per method, not per kind of conversation

    def working(self, message: InboundMessage) -> slack_live.SlackWorking | None:
        if not self.settings.typing or not message.message_id:
            return None
        return slack_live.SlackWorking(self.client.live_client, message, self.settings.status_text,
                                       self.settings.ack_reaction, delivery_error)

    def live(self, message: InboundMessage, out: OutboundMessage,
             resume: dict[str, Any] | None) -> slack_live.SlackLiveReply | None:
        if not self.settings.streaming and resume is None:
            return None
        return slack_live.SlackLiveReply(self.client.live_client, message, out, delivery_error,
                                         resume, (self.client.bot_user_id, self.client.bot_id))
